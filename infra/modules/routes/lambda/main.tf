# Static routes for the Lambda: one DynamoDB item per `route#{name}` and `host#{host}` (sort key
# `item` = "def"). for_each is keyed by the partition key, so renaming or removing a route deletes
# its old items.
#
# Importing an existing item (e.g. an admin-made route being adopted, see ../main.tf), with the
# ID format of the provider's current documentation (table name, hash key value, range key value,
# comma-separated; older 6.x releases may not support importing items at all, so check yours):
#
#   import {
#     to = module.routes.aws_dynamodb_table_item.entry["route#llama-prod"]
#     id = "ai-gateway,route#llama-prod,def"
#   }
#
# or, with Terraform >= 1.12, `identity = { table_name = "ai-gateway", hash_key_value =
# "route#llama-prod", range_key_value = "def" }` instead of `id`.

module "render" {
  source  = "../"
  routes  = var.routes
  budgets = var.budgets
}

resource "aws_dynamodb_table_item" "entry" {
  for_each = module.render.dynamodb_items

  table_name = var.table_name
  hash_key   = "entity"
  range_key  = "item"
  item       = each.value
}

# The item's `route` attribute is the route JSON inside DynamoDB JSON, which a plan shows as one
# long changed string. This copy of each typed route object costs nothing and makes the plan show
# which fields change.
resource "terraform_data" "route" {
  for_each = module.render.routes
  input    = each.value
}
