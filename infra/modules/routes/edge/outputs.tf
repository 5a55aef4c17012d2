output "keys" {
  description = "The Workers KV keys Terraform manages (`route:{name}`, `host:{host}`)."
  value       = sort(keys(module.render.kv_entries))
}

output "routes" {
  description = "The route objects written, keyed by name."
  value       = module.render.routes
}
