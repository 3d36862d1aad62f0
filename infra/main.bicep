// emnist-edge on Azure Functions Flex Consumption, deployed into one resource group.
//
// Modelled on Azure-Samples/functions-quickstart-python-http-azd and
// functions-quickstart-python-azd-eventgrid-blob (infra/main.bicep + infra/app/*.bicep, Flex
// Consumption, a user-assigned identity for everything, shared keys off), written with plain
// resources instead of registry modules so that every file builds and can be checked offline.
//
// Resource-group scope (azd: "resource group scoped deployments") so that the pipeline's
// identity needs rights on one resource group only, never on the subscription.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd: AZURE_ENV_NAME); seeds the names of all resources.')
param environmentName string

@minLength(1)
@description('Region of all resources; it must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string = resourceGroup().location

// Flex Consumption also offers 512 MB (a quarter of a vCPU), left out here: the Python worker
// alone peaks at 296 MB after indexing and the first classification (infra/coldstart.py), and
// the instance's memory is shared with the Functions host; one image at the pixel limit (40 MP,
// 120 MB as RGB) would leave the host under 100 MB. infra/README.md, "Cold start and instance
// size".
@description('Memory of each instance: 2048 MB (one vCPU) or 4096 MB (two) of the Flex Consumption sizes (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#instance-sizes).')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

// "The lowest maximum scale is currently 40. The highest currently supported value is 1000"
// (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations).
@description('Most instances the app scales out to: 40 to 1000 on Flex Consumption.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

// Always ready instances keep the HTTP group warm, so no visitor waits for a cold start (the
// instance, the package mount and the host, then the worker's own 2.1 s to index and answer,
// measured by infra/coldstart.py). They are billed around the clock for their memory (the
// "baseline", GB-seconds) plus execution time, without the on-demand free grant
// (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#billing): one
// 2048 MB instance is 2 GB x 2.59 M s (30 days) = about 5.2 M GB-s a month. 0 keeps scale to zero.
@description('Always ready instances for the HTTP functions (0: scale to zero; each one is billed all the time).')
@minValue(0)
@maxValue(20)
param alwaysReadyInstances int = 0

@description('Serve the drawing page\'s anonymous demo route (POST /api/demo/classify: one image of bounded size). Off: the page asks for a function key and uses the keyed /api/classify.')
param publicDemo bool = true

@description('HTTP requests one instance takes at once. The functions are async and the app bounds the CPU work itself (EMNIST_EDGE_CLASSIFY_CONCURRENCY), so health checks keep answering while a classification runs.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 8

@description('Name of the blob-triggered function: its @function_name in functions/blob_batch.py (tests/infra/test_package.py checks that they agree).')
param blobTriggerFunctionName string = 'classify_batch'

@description('Create the Event Grid subscription that feeds the blob trigger. Its webhook needs the blobs_extension system key, which exists only once the code is deployed: set it on a second provisioning, after the code (azd: WIRE_BLOB_TRIGGER=true). The deploy workflow deploys app/eventgrid-subscription.bicep itself instead.')
param wireBlobTrigger bool = false

// infra/README.md, "Telemetry, the workbook and the alerts".
@description('E-mail address for the SLO alerts (p95 latency, 5xx rate). Empty: the alerts still fire and show in the portal, and the action group has no receiver.')
param alertEmail string = ''

@description('Object ID of the principal given Storage Blob Data Contributor on the batches and results containers: the deploy workflow\'s identity (for its smoke test) or, with azd, the signed-in developer (AZURE_PRINCIPAL_ID). Empty: nobody.')
param dataPrincipalId string = ''

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
// The containers the blob-triggered function reads and writes: created here, watched by the Event
// Grid subscription, and given to the app as EMNIST_EDGE_BATCH_CONTAINER / _RESULTS_CONTAINER.
var batchesContainerName = 'batches'
var resultsContainerName = 'results'
// Fan-out of large batches (shared/shards.py): one message per shard; the host moves a message
// that keeps failing to <queue>-poison, which fail_shard_poison consumes.
var shardQueueName = 'batch-shards'
// Events Event Grid could not deliver to the blob trigger (eventgrid-subscription.bicep).
var deadLetterContainerName = 'deadletter'

module identity 'app/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    containerNames: [
      deploymentContainerName
      batchesContainerName
      resultsContainerName
      deadLetterContainerName
    ]
    queueNames: [
      shardQueueName
      '${shardQueueName}-poison'
    ]
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  params: {
    namePrefix: resourceToken
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    alertEmail: alertEmail
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    dataPrincipalId: dataPrincipalId
    batchesContainerName: batchesContainerName
    resultsContainerName: resultsContainerName
    systemTopicPrincipalId: eventGrid.outputs.principalId
    deadLetterContainerName: deadLetterContainerName
  }
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    batchesContainerName: batchesContainerName
    resultsContainerName: resultsContainerName
    shardQueueName: shardQueueName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    alwaysReadyInstances: alwaysReadyInstances
    publicDemo: publicDemo
  }
  // The host reaches its storage and Application Insights with the identity from its first start.
  dependsOn: [
    rbac
  ]
}

module eventGrid 'app/eventgrid.bicep' = {
  name: 'eventgrid'
  params: {
    name: 'evgt-${resourceToken}'
    location: location
    tags: tags
    storageAccountId: storage.outputs.id
  }
}

module blobTriggerSubscription 'app/eventgrid-subscription.bicep' = if (wireBlobTrigger) {
  name: 'eventgrid-subscription'
  params: {
    systemTopicName: eventGrid.outputs.name
    functionAppName: functionApp.outputs.name
    functionName: blobTriggerFunctionName
    containerName: batchesContainerName
    storageAccountName: storage.outputs.name
    deadLetterContainerName: deadLetterContainerName
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output BATCHES_CONTAINER string = batchesContainerName
output RESULTS_CONTAINER string = resultsContainerName
output DEADLETTER_CONTAINER string = deadLetterContainerName
output PUBLIC_DEMO bool = publicDemo
output EVENT_GRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.name
output BLOB_TRIGGER_FUNCTION_NAME string = blobTriggerFunctionName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output ALERTS_ACTION_GROUP_NAME string = alerts.outputs.actionGroupName
output WORKBOOK_NAME string = workbook.outputs.workbookName
