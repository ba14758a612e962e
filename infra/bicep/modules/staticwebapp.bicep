// Static Web App (Free) serving static_dashboard/. The workflow uploads the files and writes the API base URL.

@description('Static Web Apps are offered in a few regions only (e.g. westeurope, eastus2, centralus, westus2, eastasia).')
param location string

param siteName string

param tags object = {}

resource site 'Microsoft.Web/staticSites@2023-12-01' = {
  name: siteName
  location: location
  tags: tags
  sku: {
    name: 'Free'
    tier: 'Free'
  }
  properties: {
    stagingEnvironmentPolicy: 'Disabled'
    allowConfigFileUpdates: true
  }
}

output name string = site.name
output defaultHostname string = site.properties.defaultHostname
