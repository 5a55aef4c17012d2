# Static routes at the edge: one Workers KV entry per `route:{name}` and `host:{host}`.
# for_each is keyed by the KV key, so renaming or removing a route deletes its old keys.
# The value is the route JSON, so a plan shows a changed route field by field.
#
# Importing an existing key (provider v5: <account_id>/<namespace_id>/<key_name>):
#
#   terraform import 'module.routes.cloudflare_workers_kv.entry["route:llama-prod"]' \
#     <account_id>/<namespace_id>/route:llama-prod
#
# (A KV write replaces the value, so adopting an admin-made route needs no import at the edge.)

module "render" {
  source  = "../"
  routes  = var.routes
  budgets = var.budgets
}

resource "cloudflare_workers_kv" "entry" {
  for_each = module.render.kv_entries

  account_id   = var.account_id
  namespace_id = var.namespace_id
  key_name     = each.key
  value        = each.value
}
