output "routes" {
  description = "The route objects as the gateway stores them (API.md), with defaults filled in and managed_by = \"terraform\", keyed by name."
  value       = local.routes
}

output "route_json" {
  description = "Each route object as the JSON string written to the store, keyed by route name."
  value       = local.route_json
}

output "kv_entries" {
  description = "Workers KV entries for the edge: `route:{name}` → route JSON and `host:{host}` → route name."
  value       = local.kv_entries
}

output "dynamodb_items" {
  description = "DynamoDB items for the Lambda, keyed `route#{name}` / `host#{host}`, each the item in DynamoDB JSON (entity, item = \"def\", and `route` or `route_name`)."
  value       = local.dynamodb_items
}
