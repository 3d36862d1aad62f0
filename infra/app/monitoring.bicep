// Log Analytics and a workspace-based Application Insights that accepts Entra ID authenticated
// telemetry only (local, instrumentation-key auth off): the app sends with its managed identity,
// which holds Monitoring Metrics Publisher (rbac.bicep) and names itself in
// APPLICATIONINSIGHTS_AUTHENTICATION_STRING (function-app.bicep).
// As in Azure-Samples/functions-quickstart-python-http-azd (disableLocalAuth: true).
param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = applicationInsights.name
output logAnalyticsName string = logAnalytics.name
