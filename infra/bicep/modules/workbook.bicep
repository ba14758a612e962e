// The Azure Monitor workbook of a night's runs. Its content is workbook.json; the two resource ids and the
// rate limit the app runs with (NIVODA_RATE_LIMIT_PER_S) are filled in here.

@description('Azure region.')
param location string

param displayName string

param appInsightsId string

param serviceBusId string

@description('Nivoda requests per second the app is held to: the line the pages/s panel draws.')
param rateLimitPerS string

param tags object = {}

var content = replace(replace(replace(loadTextContent('workbook.json'), '__APP_INSIGHTS_ID__', appInsightsId), '__SERVICE_BUS_ID__', serviceBusId), '__RATE_LIMIT__', rateLimitPerS)

resource workbook 'Microsoft.Insights/workbooks@2022-04-01' = {
  name: guid(resourceGroup().id, displayName)
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: content
  }
}

output id string = workbook.id
