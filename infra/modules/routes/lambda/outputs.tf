output "keys" {
  description = "The partition keys (`entity`) of the items Terraform manages (`route#{name}`, `host#{host}`)."
  value       = sort(keys(module.render.dynamodb_items))
}

output "routes" {
  description = "The route objects written, keyed by name."
  value       = module.render.routes
}
