// Delivers BlobCreated events for blobs under batches/ to the blob extension's webhook of the
// function app: https://<app>/runtime/webhooks/blobs?functionName=Host.Functions.<name>&code=<key>
// ("Tutorial: Trigger Azure Functions on blob containers using an event subscription").
//
// Deploy it only after the code: the blobs_extension system key is created by the host when it
// first indexes an Event Grid blob trigger, so listKeys fails before that. The deploy workflow
// deploys this file on its own once the code runs; with azd, main.bicep deploys it when
// wireBlobTrigger is true (a second `azd provision`).
param systemTopicName string
param functionAppName string
param functionName string
param containerName string

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource functionHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: functionApp
  name: 'default'
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

var blobsExtensionKey = functionHost.listKeys().systemKeys.blobs_extension
var webhookUrl = 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${blobsExtensionKey}'

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  // Event subscription names allow letters, digits and hyphens only.
  name: '${containerName}-to-${replace(functionName, '_', '-')}'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: webhookUrl
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${containerName}/'
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output name string = subscription.name
