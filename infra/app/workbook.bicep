// A workbook on the Application Insights resource (its Workbooks blade): latency percentiles by
// route, error rate by code, batch throughput, the label mix and the model's confidence.
//
// Where each figure comes from (functions/azure_telemetry.py sends them; shared/telemetry.py
// names them):
// - `requests`: one row per HTTP request of the app (its server spans, cloud_RoleName
//   'emnist-edge', name 'METHOD /route', duration in ms, resultCode the status): percentiles
//   need these single values.
// - `customMetrics`: the app's OpenTelemetry metrics, one row per minute and attribute set, the
//   attributes in customDimensions; a counter's row holds its increase (valueSum), a histogram's
//   the sum, count, minimum and maximum of its values (valueSum, valueCount, valueMin, valueMax),
//   not its buckets ("Add custom metrics":
//   https://learn.microsoft.com/azure/azure-monitor/app/opentelemetry-add-modify#add-custom-metrics;
//   metric telemetry: https://learn.microsoft.com/azure/azure-monitor/app/data-model-metric-telemetry).
// The workbook resource and its serializedData (Notebook/1.0) follow "Programmatically manage
// workbooks" (https://learn.microsoft.com/azure/azure-monitor/visualize/workbooks-automate).
param location string
param tags object
param applicationInsightsName string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var latencyByRoute = '''
requests
| where cloud_RoleName == 'emnist-edge'
| summarize requests = count(), p50_ms = percentile(duration, 50), p95_ms = percentile(duration, 95), p99_ms = percentile(duration, 99) by route = name
| order by requests desc
'''

var p95OverTime = '''
requests
| where cloud_RoleName == 'emnist-edge' and name startswith 'POST '
| summarize p95_ms = percentile(duration, 95) by bin(timestamp, 5m), route = name
| render timechart
'''

// Error answers by their code (error.type: the API's error.code, or http_<status> where the
// answer has none), as a share of all requests (the count of the duration histogram); metrics
// are not sampled.
var errorRateByCode = '''
let answered = toscalar(customMetrics
    | where name == 'emnist_edge.http.duration'
    | summarize sum(valueCount));
customMetrics
| where name == 'emnist_edge.http.errors'
| summarize errors = sum(valueSum) by code = tostring(customDimensions['error.type']), route = tostring(customDimensions['http.route'])
| extend percent_of_requests = round(100.0 * errors / answered, 3)
| order by errors desc
'''

var errorsOverTime = '''
customMetrics
| where name == 'emnist_edge.http.errors'
| summarize errors = sum(valueSum) by bin(timestamp, 5m), code = tostring(customDimensions['error.type'])
| render timechart
'''

var serverErrorRate = '''
requests
| where cloud_RoleName == 'emnist-edge' and name !contains '/health'
| summarize server_error_percent = 100.0 * countif(toint(resultCode) >= 500) / count() by bin(timestamp, 5m)
| render timechart
'''

var batchThroughput = '''
customMetrics
| where name == 'emnist_edge.batch.items'
| summarize items_per_second = sum(valueSum) / 300.0 by bin(timestamp, 5m), outcome = tostring(customDimensions['outcome'])
| render timechart
'''

var batchFailures = '''
customMetrics
| where name == 'emnist_edge.batch.items' and tostring(customDimensions['outcome']) == 'failed'
| summarize items = sum(valueSum) by code = tostring(customDimensions['error.type'])
| order by items desc
'''

// The label mix: the confidence histogram's count by label (one value per predicted image).
var labelMix = '''
customMetrics
| where name == 'emnist_edge.prediction.confidence'
| summarize images = sum(valueCount) by label = tostring(customDimensions['label'])
| extend percent = round(100.0 * images / toscalar(customMetrics | where name == 'emnist_edge.prediction.confidence' | summarize sum(valueCount)), 2)
| order by images desc
'''

var confidenceOverTime = '''
customMetrics
| where name == 'emnist_edge.prediction.confidence'
| summarize mean_confidence = sum(valueSum) / sum(valueCount), lowest = min(valueMin) by bin(timestamp, 1h)
| render timechart
'''

var stagesAndBatching = '''
customMetrics
| where name in ('emnist_edge.stage.duration', 'emnist_edge.dynamic_batch.size')
| extend series = iff(name == 'emnist_edge.stage.duration', strcat('mean ', tostring(customDimensions['stage']), ' ms'), 'mean requests per forward pass')
| summarize mean = sum(valueSum) / sum(valueCount) by bin(timestamp, 5m), series
| render timechart
'''

// The workbook's query items, in order: (title, query, visualization).
var queries = [
  {
    title: 'Latency percentiles by route (ms)'
    kql: latencyByRoute
    visualization: 'table'
  }
  {
    title: 'p95 of the classify routes (ms)'
    kql: p95OverTime
    visualization: 'timechart'
  }
  {
    title: 'Error answers by code'
    kql: errorRateByCode
    visualization: 'table'
  }
  {
    title: 'Error answers over time'
    kql: errorsOverTime
    visualization: 'timechart'
  }
  {
    title: '5xx rate (%)'
    kql: serverErrorRate
    visualization: 'timechart'
  }
  {
    title: 'Batch throughput (items/s by outcome)'
    kql: batchThroughput
    visualization: 'timechart'
  }
  {
    title: 'Failed batch items by code'
    kql: batchFailures
    visualization: 'table'
  }
  {
    title: 'Label mix'
    kql: labelMix
    visualization: 'barchart'
  }
  {
    title: 'Confidence of the predicted label'
    kql: confidenceOverTime
    visualization: 'timechart'
  }
  {
    title: 'Stage times and dynamic batch size'
    kql: stagesAndBatching
    visualization: 'timechart'
  }
]

// Each as a workbook query item (KqlItem/1.0 on this Application Insights resource), over the
// last 24 hours. (A loop in a variable: Checkov's Bicep parser reads neither user-defined
// functions nor lambdas.)
var queryItems = [for item in queries: {
  type: 3
  name: item.title
  content: {
    version: 'KqlItem/1.0'
    title: item.title
    query: item.kql
    size: 0
    timeContext: {
      durationMs: 86400000
    }
    queryType: 0
    resourceType: 'microsoft.insights/components'
    visualization: item.visualization
  }
}]

var about = {
  type: 1
  name: 'about'
  content: {
    json: '## emnist-edge\nRequests and their latency come from the app\'s request spans (`requests`), errors, batches and labels from its metrics (`customMetrics`). Alerts: p95 of the classify requests over 15 ms, 5xx over 1 % (infra/app/alerts.bicep).'
  }
}

var workbook = {
  version: 'Notebook/1.0'
  items: concat([
    about
  ], queryItems)
  fallbackResourceIds: [
    applicationInsights.id
  ]
  '$schema': 'https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json'
}

resource dashboard 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name is a GUID, stable across deployments.
  name: guid(applicationInsights.id, 'emnist-edge-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'emnist-edge: latency, errors, batches, labels'
    category: 'workbook'
    sourceId: applicationInsights.id
    version: 'Notebook/1.0'
    serializedData: string(workbook)
  }
}

output workbookName string = dashboard.name
