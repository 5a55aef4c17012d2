# Renders the routes into the exact entries the gateway reads. No resources here: ./edge writes
# `kv_entries` to Workers KV, ./lambda writes `dynamodb_items` to the DynamoDB table. Both use
# for_each over these maps, so renaming or removing a route removes its entries.
#
# Routes are typed objects (var.routes), never JSON strings: pass maps/objects from HCL, and the
# stored value is jsonencode() of the object below. A changed field then shows as that field in
# the plan: Terraform renders a JSON string attribute as a structural diff when both the old and
# the new value are valid JSON (the KV value at the edge; for the Lambda, whose item nests the
# route JSON inside DynamoDB JSON, ./lambda keeps a terraform_data copy of each object for the
# same purpose).
#
# Adopting a route made with the admin API: add it to `routes` under the same name and apply.
# From then on the Terraform copy (managed_by = "terraform") is the only source of truth: the
# gateway drops the admin-made copy and writes an audit entry with actor `terraform` and the old
# and new version hashes, and the admin API refuses writes to it (409). Leases (endpoints that
# registered themselves) are not part of the route object and survive. If the admin copy sits
# under the very key Terraform writes, import that key first (./edge and ./lambda say how), so
# that the apply updates it instead of failing to create it.

locals {
  # The route object of API.md, field for field; `via`, `rate_limit_rpm`, `usage` and `models` only when set.
  routes = {
    for name, r in var.routes : name => merge({
      name    = name
      host    = r.host
      enabled = r.enabled
      endpoints = [
        for e in r.endpoints : merge(
          { id = e.id, url = e.url, weight = e.weight },
          { for k, v in { via = e.via } : k => v if v != null },
        )
      ]
      auth = { required = r.auth.required, groups = r.auth.groups }
      affinity = merge(
        { header = r.affinity.header, cookie = r.affinity.cookie },
        { for k, v in { fallback = r.affinity.fallback, balance_factor = r.affinity.balance_factor } : k => v if v != null },
      )
      upstream_api_key_secret = r.upstream_api_key_secret
      timeouts                = { connect_ms = r.timeouts.connect_ms, response_ms = r.timeouts.response_ms, idle_ms = r.timeouts.idle_ms }
      max_body_bytes          = r.max_body_bytes
      sandbox                 = r.sandbox
      forward_set_cookie      = r.forward_set_cookie
      managed_by              = "terraform"
      },
      { for k, v in { rate_limit_rpm = r.rate_limit_rpm, usage = r.usage == "client" ? null : r.usage } : k => v if v != null },
      length(r.models) > 0 ? { models = r.models } : {},
    )
  }

  # Model routing under /v1/: each model name → the route serving it.
  model_routes = merge([for name, r in var.routes : { for m in r.models : m => name }]...)

  route_json = { for name, r in local.routes : name => jsonencode(r) }

  # Token budgets as the gateway stores them; unset limits left out.
  budget_json = {
    for key, b in var.budgets : key => jsonencode(merge(
      { for k, v in { tokens_per_minute = b.tokens_per_minute, tokens_per_day = b.tokens_per_day, tokens_per_month = b.tokens_per_month } : k => v if v != null },
      { managed_by = "terraform" },
    ))
  }

  # The layout is gateway_core::schema's: tests/layout.golden.json is what it says this module
  # writes, and infra/check compares the rendered entries against it.
  # Workers KV (binding GATEWAY_KV): `route:{name}` → route JSON, `host:{host}` → route name,
  # `model:{model}` → route name.
  kv_entries = merge(
    { for name, json in local.route_json : "route:${name}" => json },
    { for name, r in var.routes : "host:${r.host}" => name if r.host != null },
    { for m, name in local.model_routes : "model:${m}" => name },
    { for key, json in local.budget_json : "budget:${key}" => json },
  )

  # DynamoDB (table GATEWAY_TABLE, keys entity/item), in DynamoDB JSON as aws_dynamodb_table_item wants:
  # route#{name}/def with `route` = route JSON, host#{host}/def with `route_name`.
  dynamodb_items = merge(
    {
      for name, json in local.route_json : "route#${name}" => jsonencode({
        entity = { S = "route#${name}" }
        item   = { S = "def" }
        route  = { S = json }
      })
    },
    {
      for name, r in var.routes : "host#${r.host}" => jsonencode({
        entity     = { S = "host#${r.host}" }
        item       = { S = "def" }
        route_name = { S = name }
      }) if r.host != null
    },
    # models/{model} with `route_name`: model routing's index, one partition.
    {
      for m, name in local.model_routes : "models#${m}" => jsonencode({
        entity     = { S = "models" }
        item       = { S = m }
        route_name = { S = name }
      })
    },
    # budgets/{kind}/{id} with `budget`: token budgets, one partition.
    {
      for key, json in local.budget_json : "budgets#${key}" => jsonencode({
        entity = { S = "budgets" }
        item   = { S = key }
        budget = { S = json }
      })
    },
  )
}
