// Service Bus Standard (the cheapest tier with duplicate detection) and the two queues of a run.

@description('Azure region.')
param location string

@description('Namespace name (6-50 characters).')
@minLength(6)
@maxLength(50)
param namespaceName string

@description('Deliveries of one message before it is dead-lettered (QUEUE_MAX_DELIVERIES uses the same number).')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int

@description('Lock on a work item: one page is at most NIVODA_READ_ATTEMPTS requests of NIVODA_TIMEOUT_S (3 x 60 s) plus the upsert; the host renews the lock for up to ten minutes (host.json maxAutoLockRenewalDuration), which covers a page waiting for its rate-limit slot.')
param workItemLockDuration string = 'PT3M'

@description('Lock on a consolidate message: one slice (CONSOLIDATOR_SLICE_S) plus its commit.')
param consolidateLockDuration string = 'PT5M'

@description('Duplicate-detection window: longer than the longest run (RUN_DEADLINE_MINUTES), so a page re-sent late in a run is still recognised.')
param duplicateDetectionWindow string = 'P1D'

@description('A work item older than this is useless (its run is past its deadline); it expires into the dead-letter queue, where the alert sees it.')
param workItemTimeToLive string = 'PT12H'

param tags object = {}

var queues = [
  {
    name: 'work-items'
    lockDuration: workItemLockDuration
    timeToLive: workItemTimeToLive
  }
  {
    name: 'consolidate'
    lockDuration: consolidateLockDuration
    timeToLive: 'P1D'
  }
]

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    minimumTlsVersion: '1.2'
    // Senders and receivers sign in with the app's managed identity (Data Sender / Data Receiver roles).
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [for q in queues: {
  parent: namespace
  name: q.name
  properties: {
    lockDuration: q.lockDuration
    maxDeliveryCount: maxDeliveryCount
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    defaultMessageTimeToLive: q.timeToLive
    deadLetteringOnMessageExpiration: true
    enableBatchedOperations: true
    requiresSession: false
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}]

output name string = namespace.name
output id string = namespace.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
