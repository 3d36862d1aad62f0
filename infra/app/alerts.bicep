// Alerts on the service level objectives, wired to one action group.
//
// Both rules are log search alerts (Microsoft.Insights/scheduledQueryRules, kind LogAlert) on the
// Application Insights resource, over the app's own request spans: functions/request_telemetry.py
// opens a server span per HTTP request, which Azure Monitor's exporter stores as a `requests` row
// named 'METHOD /route', with the duration in milliseconds and the status as resultCode, under
// cloud_RoleName 'emnist-edge' (shared/telemetry.py SERVICE; the Functions host's own rows carry
// the app's name instead). Percentiles need the single requests: the metrics reach
// Application Insights as sums, counts, minimum and maximum per minute only ("Add custom
// metrics": https://learn.microsoft.com/azure/azure-monitor/app/opentelemetry-add-modify#add-custom-metrics).
// Shaped after "Resource Manager template samples for log search alert rules"
// (https://learn.microsoft.com/azure/azure-monitor/alerts/resource-manager-alerts-log) and
// "Resource Manager template samples for action groups"
// (https://learn.microsoft.com/azure/azure-monitor/alerts/resource-manager-action-groups).
// The rules run without a managed identity of their own, as in those samples (identity is
// optional in the 2023-12-01 schema), on a resource in the same resource group.
param namePrefix string
param location string
param tags object
param applicationInsightsName string

@description('E-mail address the alerts go to. Empty: the action group has no receiver, and the alerts only show in the portal.')
param alertEmail string

@description('The latency objective: p95 of the classify requests (POST routes) over 5 minutes, in milliseconds (the load tests\' gate, loadtests/).')
param latencyP95Ms int = 15

@description('The server error objective: percent of requests answered 5xx over 5 minutes (health probes left out).')
param serverErrorPercent int = 1

// The same window for both rules: "p95 over 15 ms for 5 minutes".
var window = 'PT5M'

// At least 20 requests in the window: one cold start (model load, 0.2 s) among a handful of
// requests would otherwise be a p95 breach on its own.
var latencyQuery = '''
requests
| where cloud_RoleName == 'emnist-edge' and name startswith 'POST '
| summarize p95_ms = percentile(duration, 95), requests = count()
| where requests >= 20
'''

// /api/health/ready answers 503 while the model loads, by design (the deploy workflow polls it).
var serverErrorQuery = '''
requests
| where cloud_RoleName == 'emnist-edge' and name !contains '/health'
| summarize requests = count(), server_errors = countif(toint(resultCode) >= 500)
| extend server_error_percent = 100.0 * server_errors / requests
'''

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    // At most 12 characters (SMS and e-mail subjects).
    groupShortName: 'emnist-edge'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'slo-email'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource latencyAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${namePrefix}-p95-latency'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'emnist-edge: classify p95 over ${latencyP95Ms} ms'
    description: 'p95 of POST requests (classify, v2 infer, demo) over ${latencyP95Ms} ms in 5 minutes, with at least 20 requests.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: window
    windowSize: window
    criteria: {
      allOf: [
        {
          query: latencyQuery
          metricMeasureColumn: 'p95_ms'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: latencyP95Ms
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource serverErrorAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${namePrefix}-5xx-rate'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'emnist-edge: 5xx over ${serverErrorPercent} %'
    description: 'More than ${serverErrorPercent} % of requests (health probes left out) answered 5xx in 5 minutes.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: window
    windowSize: window
    criteria: {
      allOf: [
        {
          query: serverErrorQuery
          metricMeasureColumn: 'server_error_percent'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: serverErrorPercent
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupName string = actionGroup.name
