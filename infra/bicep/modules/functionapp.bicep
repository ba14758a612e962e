// The Function App on a Linux Flex Consumption plan: Python 3.11, system-assigned identity, every app setting.

@description('Azure region.')
param location string

param planName string

param appName string

@description('Blob endpoint of the host storage account (deployment package container lives there).')
param storageBlobEndpoint string

param deploymentContainerName string

@description('Memory of each instance: 2048 MB holds the worker, a page of 50 stones and a consolidation batch.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

// Flex Consumption refuses a value below 40, and the bound applies to each function group (http, durable, each
// Service Bus function), not to the app: it bounds no connection count. docs/deploy.md derives that bound from
// the queue depth instead.
@description('Upper bound on instances of each function group (Flex Consumption: 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Always-ready instances for the HTTP functions (0: scale to zero, the first request after a pause waits for a cold start).')
@minValue(0)
param alwaysReadyHttpInstances int

@description('App settings as an object of name to value (main.bicep builds it).')
param appSettings object

param tags object = {}

var alwaysReady = alwaysReadyHttpInstances > 0 ? [
  {
    name: 'http'
    instanceCount: alwaysReadyHttpInstances
  }
] : []

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
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

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: 'SystemAssigned'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReady
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Publishing uses Microsoft Entra tokens (azure/login), never basic-auth credentials.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output principalId string = site.identity.principalId
output defaultHostname string = site.properties.defaultHostName
