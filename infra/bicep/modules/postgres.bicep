// Azure Database for PostgreSQL flexible server and the Opus database.
//
// Network: public access limited by firewall rules. The Flex Consumption app has no fixed outbound address
// without virtual network integration, so the rule "allow Azure services" (0.0.0.0) lets it in; TLS is
// required and the password lives in Key Vault. docs/deploy.md describes the private-access alternative.

@description('Azure region.')
param location string

@description('Server name (3-63 lower-case letters, digits, hyphens).')
param serverName string

@description('Compute size, e.g. Standard_B1ms (Burstable) or Standard_B2s.')
param skuName string

@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param skuTier string

@description('Provisioned storage in GiB (32 is the smallest); it grows by itself when nearly full.')
@minValue(32)
param storageSizeGB int

@description('Days of point-in-time restore.')
@minValue(7)
@maxValue(35)
param backupRetentionDays int

param administratorLogin string

@secure()
param administratorPassword string

param databaseName string

@description('Client address ranges allowed besides Azure services, as [{ name, start, end }] (an operator running migrations).')
param clientFirewallRules array = []

param tags object = {}

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: serverName
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: '16'
    administratorLogin: administratorLogin
    administratorLoginPassword: administratorPassword
    authConfig: {
      activeDirectoryAuth: 'Disabled'
      passwordAuth: 'Enabled'
    }
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: backupRetentionDays
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource requireTls 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: server
  name: 'require_secure_transport'
  properties: {
    value: 'ON'
    source: 'user-override'
  }
}

// The server takes one operation on its children at a time ("another operation is in progress"): each child
// waits for the one before it.
resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [
    requireTls
  ]
}

// 0.0.0.0 - 0.0.0.0 is the service's own notation for "connections from Azure services".
resource allowAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: server
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
  dependsOn: [
    database
  ]
}

@batchSize(1)
resource clientRule 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = [for rule in clientFirewallRules: {
  parent: server
  name: rule.name
  properties: {
    startIpAddress: rule.start
    endIpAddress: rule.end
  }
  dependsOn: [
    allowAzureServices
  ]
}]

output name string = server.name
output fqdn string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
