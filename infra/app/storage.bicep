// The app's storage account: the Functions host's own state, the deployment package container,
// and the batches/results containers. Entra ID only (no shared keys, no SAS from account keys),
// no anonymous blob access, TLS 1.2 at least.
// Follows the storage settings of Azure-Samples/functions-quickstart-python-http-azd and the
// quickstart template function-app-flex-managed-identities.
param name string
param location string
param tags object

@description('Blob containers to create: the deployment package, batches and results.')
param containerNames array

@description('Queues to create: the shard queue of fanned-out batches and its poison queue (the Functions host moves a message there after maxDequeueCount deliveries, and creates it if missing; created here so that its trigger and its role exist before the first poison message).')
param queueNames array = []

@description('Replication. Batches and results are transient and the package is rebuilt by every deployment, so locally redundant storage is the default.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: replication is the skuName parameter; LRS is the default on purpose (see skuName).
  // checkov:skip=CKV_AZURE_59: public endpoint needed: Flex Consumption without a VNet, Event Grid and the CI runners reach it; every request still needs an Entra ID token.
  // checkov:skip=CKV_AZURE_35: same reason as CKV_AZURE_59 (no VNet to restrict the network to).
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in containerNames: {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
