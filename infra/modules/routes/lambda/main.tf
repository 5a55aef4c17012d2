# Static routes for the Lambda: one DynamoDB item per `route#{name}` and `host#{host}` (sort key
# `item` = "def"). for_each is keyed by the partition key, so renaming or removing a route deletes
# its old items.

module "render" {
  source = "../"
  routes = var.routes
}

resource "aws_dynamodb_table_item" "entry" {
  for_each = module.render.dynamodb_items

  table_name = var.table_name
  hash_key   = "entity"
  range_key  = "item"
  item       = each.value
}
