// Delivers BlobCreated events for blobs under batches/ to the blob extension's webhook of the
// function app: https://<app>/runtime/webhooks/blobs?functionName=Host.Functions.<name>&code=<key>
// ("Tutorial: Trigger Azure Functions on blob containers using an event subscription",
// https://learn.microsoft.com/azure/azure-functions/functions-event-grid-blob-trigger).
//
// Deploy it only after the code: the blobs_extension system key is created by the host when it
// first indexes an Event Grid blob trigger, so listKeys fails before that. The deploy workflow
// deploys this file on its own once the code runs; with azd, main.bicep deploys it when
// wireBlobTrigger is true (a second `azd provision`).
param systemTopicName string
param functionAppName string
param functionName string
param containerName string

@description('Storage account that holds the dead-letter container.')
param storageAccountName string

@description('Container that receives the events Event Grid gives up on (written with the system topic\'s identity).')
param deadLetterContainerName string

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

// The host keys through the listKeys() function on the resource ID (Microsoft.Web/sites/host/
// default, POST .../host/default/listKeys, "Web Apps - List Host Keys" in the REST reference)
// rather than an `existing` Microsoft.Web/sites/host resource: that type has no Bicep type
// definitions, so declaring it raises warning BCP081 (Azure/bicep#9355), which fails ci.yml's
// Bicep job. A string resource ID is not something the use-resource-symbol-reference linter rule
// flags (it matches only `<symbol>.id` and resourceId() of a declared resource).
var hostKeys = listKeys('${functionApp.id}/host/default', functionApp.apiVersion)
var webhookUrl = 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${hostKeys.systemKeys.blobs_extension}'

// Event Grid retries a delivery the webhook did not take (timeouts, 408, 429, 5xx) with
// exponential back-off, up to 30 attempts within a day; a webhook's 400, 401, 403, 404 and 413
// are not retried but dead-lettered at once ("Event Grid message delivery and retry",
// https://learn.microsoft.com/azure/event-grid/delivery-and-retry). The blob extension
// answers 202 once it has queued the event, so a failing *function* is not Event Grid's
// business: its retries end in the blob extension's poison queue (webjobs-blobtrigger-poison).
// Without a dead-letter destination, events that run out of attempts or are refused are
// dropped without a trace. Written with the system topic's managed identity (shared keys are
// off on the account), which holds Storage Blob Data Contributor on this container only
// (rbac.bicep): "Dead letter and retry policies" and "Deliver events using a managed
// identity" (https://learn.microsoft.com/azure/event-grid/manage-event-delivery,
// https://learn.microsoft.com/azure/event-grid/managed-service-identity).
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
    // Retries, then the deadletter container: see above.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output name string = subscription.name
