//! Creates the gateway's table exactly as `infra/modules/lambda` declares it, for
//! tests and local runs against a local DynamoDB (moto).

use crate::store::{PK, SK, TTL};
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification};
use aws_sdk_dynamodb::Client;

/// Creates `table` (pay per request, `entity`/`item` keys) and turns on TTL on `ttl`.
pub async fn create_table(client: &Client, table: &str) -> Result<(), String> {
    let attr = |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(PK).map_err(|e| e.to_string())?)
        .attribute_definitions(attr(SK).map_err(|e| e.to_string())?)
        .key_schema(key(PK, KeyType::Hash).map_err(|e| e.to_string())?)
        .key_schema(key(SK, KeyType::Range).map_err(|e| e.to_string())?)
        .send()
        .await
        .map_err(|e| format!("create table: {e:?}"))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(TimeToLiveSpecification::builder().enabled(true).attribute_name(TTL).build().map_err(|e| e.to_string())?)
        .send()
        .await
        .map_err(|e| format!("enable ttl: {e:?}"))?;
    Ok(())
}
