// The Flex Consumption plan (FC1) and the Linux Python function app on it.
//
// Flex Consumption keeps the runtime, scaling and deployment source in properties.functionAppConfig
// (Microsoft.Web/sites 2023-12-01 and later) instead of app settings: FUNCTIONS_WORKER_RUNTIME,
// FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE and siteConfig.linuxFxVersion must not be
// set. Shaped after infra/core/host/functions-flexconsumption.bicep and infra/app/api.bicep of
// Azure-Samples/functions-quickstart-python-http-azd, and the quickstart template
// function-app-flex-managed-identities (Learn: "Flex Consumption plan hosting").
param name string
param planName string
param location string
param tags object

@description('Resource ID of the user-assigned identity the app runs as.')
param identityId string

@description('Client ID of that identity: the identity-based connections name it.')
param identityClientId string

param storageAccountName string
param deploymentContainerName string
param batchesContainerName string
param resultsContainerName string

@description('The queue that carries the shards of a fanned-out batch (its poison queue is this name with -poison).')
param shardQueueName string
param applicationInsightsName string
param instanceMemoryMB int
param maximumInstanceCount int
param httpPerInstanceConcurrency int
param alwaysReadyInstances int
param publicDemo bool

// Torch intra-op threads: one per vCPU of the instance size (2048 MB: one, 4096 MB: two).
// os.cpu_count() reports the host's cores, not the instance's share.
var torchThreads = instanceMemoryMB >= 4096 ? 2 : 1

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy exists in some regions only; a stateless app that redeploys in minutes does without it.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: client certificates do not fit a public drawing page and API; POST routes need a function key.
  // checkov:skip=CKV_AZURE_212: scale to zero is the point of Flex Consumption; always-ready instances (alwaysReadyInstances, default 0) bill around the clock.
  // checkov:skip=CKV_AZURE_213: App Service health check (instance replacement) belongs to Premium and Dedicated plans; the deploy workflow probes /api/health/ready.
  // checkov:skip=CKV_AZURE_222: public by design (the drawing page and the API); Flex Consumption without a VNet.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        // The HTTP functions scale as one group, named 'http' ("Flex Consumption plan hosting":
        // per-function scaling, always ready instances). None by default: see main.bicep.
        alwaysReady: alwaysReadyInstances > 0 ? [
          {
            name: 'http'
            instanceCount: alwaysReadyInstances
          }
        ] : []
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  // Every app setting, in one place. The host's storage connection is identity-based: no
  // AzureWebJobsStorage connection string, no account key anywhere ("Connecting to host storage
  // with an identity"). The blob trigger uses the same connection (connection="AzureWebJobsStorage"),
  // and functions/storage.py reads its __blobServiceUri, __queueServiceUri and __clientId.
  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      // shared/config.py: the model files default to model/ inside the package, which is where
      // the package carries them, so their paths are not set here.
      EMNIST_EDGE_BATCH_CONTAINER: batchesContainerName
      EMNIST_EDGE_RESULTS_CONTAINER: resultsContainerName
      // Fan-out (shared/shards.py): shards of 10,000 items, a few seconds each on one core
      // (README "Batches": the measurements behind the size).
      EMNIST_EDGE_SHARD_QUEUE: shardQueueName
      EMNIST_EDGE_BATCH_SHARD_ITEMS: '10000'
      EMNIST_EDGE_TORCH_THREADS: string(torchThreads)
      EMNIST_EDGE_CLASSIFY_CONCURRENCY: '1'
      EMNIST_EDGE_BATCH_SIZE: '256'
      EMNIST_EDGE_MAX_IMAGES: '64'
      EMNIST_EDGE_MAX_IMAGE_PIXELS: '40000000'
      EMNIST_EDGE_MAX_BODY_BYTES: '10485760'
      EMNIST_EDGE_MAX_JSON_BYTES: '10485760'
      // The anonymous demo route (functions/http_functions.py indexes it only when this is on).
      EMNIST_EDGE_PUBLIC_DEMO: publicDemo ? 'true' : 'false'
    }
  }

  // No FTP and no basic-auth (publishing profile) deployments: code is deployed with Entra ID.
  resource ftpPublishing 'basicPublishingCredentialsPolicies' = {
    name: 'ftp'
    properties: {
      allow: false
    }
  }

  resource scmPublishing 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: {
      allow: false
    }
  }
}

output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
