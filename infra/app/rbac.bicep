// The least roles that work, each on the narrowest scope that works.
//
// The app's identity, on the storage account:
//   Storage Blob Data Owner: the host's own blobs (AzureWebJobsStorage: leases, keys, blob
//     receipts), the deployment package container, and reading batches / writing results.
//   Storage Queue Data Contributor: the blob trigger's poison queue, and the shard queue of
//     fanned-out batches (the blob trigger sends, the queue trigger reads and deletes, the host
//     moves poison messages to batch-shards-poison). Functions documents these two
//     for a blob trigger and for an identity-based AzureWebJobsStorage ("Connecting to host storage
//     with an identity"; includes/functions-blob-permissions.md). Storage Account Contributor, also
//     listed there, is for the polling blob trigger; the Event Grid source does not need it.
// The app's identity, on Application Insights:
//   Monitoring Metrics Publisher: send telemetry with Entra ID auth (local auth is off).
// The data principal (the deploy workflow's identity, or the developer running azd), on the
// batches and results containers only:
//   Storage Blob Data Contributor: upload a batch and read its results in the smoke test.
// The Event Grid system topic's identity, on the deadletter container only:
//   Storage Blob Data Contributor: write the events it gives up on (eventgrid-subscription.bicep).
// Role definition IDs: Azure built-in roles reference; the same IDs as the Azure quickstart
// template function-app-flex-managed-identities.
param storageAccountName string
param applicationInsightsName string
param identityPrincipalId string
param dataPrincipalId string
param batchesContainerName string
param resultsContainerName string
param systemTopicPrincipalId string
param deadLetterContainerName string

var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource batches 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: batchesContainerName
}

resource results 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: resultsContainerName
}

resource deadLetter 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource appBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identityPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource dataBatches 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(dataPrincipalId)) {
  name: guid(batches.id, dataPrincipalId, storageBlobDataContributor)
  scope: batches
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: dataPrincipalId
  }
}

resource dataResults 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(dataPrincipalId)) {
  name: guid(results.id, dataPrincipalId, storageBlobDataContributor)
  scope: results
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: dataPrincipalId
  }
}

resource topicDeadLetter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetter.id, systemTopicPrincipalId, storageBlobDataContributor)
  scope: deadLetter
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
  }
}
