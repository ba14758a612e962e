// Log Analytics workspace and the workspace-based Application Insights resource the app reports to.

@description('Azure region.')
param location string

@description('Log Analytics workspace name.')
param workspaceName string

@description('Application Insights resource name.')
param appInsightsName string

@description('Days the application telemetry tables keep data (4-730). Ingestion already pays for 31 days, so a shorter retention saves nothing: it only keeps less.')
@minValue(4)
@maxValue(730)
param retentionDays int

param tags object = {}

// The Application Insights tables of a workspace-based resource; each keeps `retentionDays`.
var telemetryTables = [
  'AppRequests'
  'AppDependencies'
  'AppTraces'
  'AppExceptions'
  'AppMetrics'
  'AppEvents'
  'AppPerformanceCounters'
  'AppAvailabilityResults'
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    // The workspace default cannot go below 30 days; the telemetry tables below are set one by one.
    retentionInDays: max(30, retentionDays)
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

resource tableRetention 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = [for table in telemetryTables: {
  parent: workspace
  name: table
  properties: {
    retentionInDays: retentionDays
    totalRetentionInDays: retentionDays
  }
  // The App* tables belong to the Application Insights resource: set their retention once it has made them.
  dependsOn: [
    appInsights
  ]
}]

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Ingestion only with Microsoft Entra tokens: the app's identity holds Monitoring Metrics Publisher.
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

output workspaceId string = workspace.id
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
