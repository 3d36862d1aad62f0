// The Event Grid system topic of the storage account: the source of the BlobCreated events that
// feed the blob trigger (source=func.BlobSource.EVENT_GRID, the only blob trigger kind Flex
// Consumption runs). Its subscription is eventgrid-subscription.bicep, deployed once the code is.
// As in Azure-Samples/functions-quickstart-python-azd-eventgrid-blob, plus a system-assigned
// identity: the subscription dead-letters with it (shared keys are off on the storage account),
// and rbac.bicep lets it write to the dead-letter container only ("Enable managed identity for
// system topics", https://learn.microsoft.com/azure/event-grid/enable-identity-system-topics).
param name string
param location string
param tags object
param storageAccountId string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = systemTopic.name
output principalId string = systemTopic.identity.principalId
