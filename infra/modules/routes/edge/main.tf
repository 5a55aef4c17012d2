# Static routes at the edge: one Workers KV entry per `route:{name}` and `host:{host}`.
# for_each is keyed by the KV key, so renaming or removing a route deletes its old keys.

module "render" {
  source = "../"
  routes = var.routes
}

resource "cloudflare_workers_kv" "entry" {
  for_each = module.render.kv_entries

  account_id   = var.account_id
  namespace_id = var.namespace_id
  key_name     = each.key
  value        = each.value
}
