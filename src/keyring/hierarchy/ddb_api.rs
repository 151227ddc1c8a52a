//! The boundary between the branch key store and DynamoDB: the four calls it makes, as a small trait.
//!
//! [`DdbApi`] is implemented for [`aws_sdk_dynamodb::Client`]; unit tests implement it with doubles that
//! count calls or answer what a racing writer would cause.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put, ScalarAttributeType,
    TransactWriteItem,
};

use crate::error::Retry;
use crate::keyring::kms::error::error_chain;

/// A DynamoDB call in flight. `'static` so that it can run on whichever tokio runtime is at hand.
pub(crate) type DdbFuture<T> = Pin<Box<dyn Future<Output = Result<T, DdbError>> + Send + 'static>>;

/// One attribute value, as the store reads and writes them. Types the store never writes are kept only by
/// name, so that validation can say what it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attr {
    /// A string (`S`).
    S(String),
    /// A number (`N`), in its decimal text form.
    N(String),
    /// Binary (`B`).
    B(Vec<u8>),
    /// Any other type, by its DynamoDB type name (`BOOL`, `L`, `M`, ...).
    Other(&'static str),
}

/// An item: attribute name to value.
pub(crate) type Item = BTreeMap<String, Attr>;

/// One conditional `Put` of a `TransactWriteItems`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConditionalPut {
    /// The item written.
    pub item: Item,
    /// The `ConditionExpression`.
    pub condition: &'static str,
    /// The `ExpressionAttributeNames`.
    pub names: Vec<(&'static str, &'static str)>,
    /// The `ExpressionAttributeValues`.
    pub values: Vec<(&'static str, Attr)>,
}

/// What kind of DynamoDB failure this is, as far as the store acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DdbErrorKind {
    /// A `TransactWriteItems` condition failed (`TransactionCanceledException` for `ConditionalCheckFailed`).
    ConditionFailed,
    /// The table does not exist (`ResourceNotFoundException`).
    TableNotFound,
    /// Throttled, timed out, a 5xx or not reached: a later try may get through.
    Transient,
    /// Anything else.
    Other,
}

/// A failed DynamoDB call. Never holds key material (the store's items hold only encrypted keys anyway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DdbError {
    pub kind: DdbErrorKind,
    /// The AWS error code and message, or the SDK's error chain.
    pub detail: String,
}

impl DdbError {
    /// Whether a later try may get through.
    pub fn retry(&self) -> Retry {
        match self.kind {
            DdbErrorKind::Transient => Retry::Later,
            DdbErrorKind::ConditionFailed | DdbErrorKind::TableNotFound | DdbErrorKind::Other => Retry::Never,
        }
    }

    fn from_sdk<E>(err: SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let chain = error_chain(&err);
        let kind = match &err {
            SdkError::ServiceError(service) => match service.err().code() {
                Some("TransactionCanceledException" | "ConditionalCheckFailedException")
                    if chain.contains("ConditionalCheckFailed") =>
                {
                    DdbErrorKind::ConditionFailed
                }
                Some("ResourceNotFoundException") => DdbErrorKind::TableNotFound,
                Some(
                    "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable",
                ) => DdbErrorKind::Transient,
                _ if service.raw().status().as_u16() >= 500 => DdbErrorKind::Transient,
                _ => DdbErrorKind::Other,
            },
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => DdbErrorKind::Transient,
            _ => DdbErrorKind::Other,
        };
        let detail = match &err {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("error");
                format!("{code}: {}", service.err().message().unwrap_or(&chain))
            }
            _ => chain,
        };
        Self { kind, detail }
    }
}

/// The DynamoDB operations the branch key store uses.
pub(crate) trait DdbApi: Send + Sync + 'static {
    /// `GetItem` of `key` from `table` (no `ConsistentRead`, no projection: as the Material Providers
    /// Library reads).
    fn get_item(&self, table: &str, key: Item) -> DdbFuture<Option<Item>>;

    /// `TransactWriteItems` of `puts` into `table`, all or none.
    fn transact_put(&self, table: &str, puts: Vec<ConditionalPut>) -> DdbFuture<()>;

    /// `DescribeTable`: the table's status (`ACTIVE`, `CREATING`, ...), `None` if there is no such table.
    fn table_status(&self, table: &str) -> DdbFuture<Option<String>>;

    /// `CreateTable` with the key store's key schema, billed per request.
    fn create_table(&self, table: &str) -> DdbFuture<()>;
}

fn to_sdk(attr: Attr) -> AttributeValue {
    match attr {
        Attr::S(s) => AttributeValue::S(s),
        Attr::N(n) => AttributeValue::N(n),
        Attr::B(b) => AttributeValue::B(Blob::new(b)),
        // Never written: the store builds items of S, N and B only.
        Attr::Other(name) => AttributeValue::S(format!("(unwritable {name})")),
    }
}

fn from_sdk(value: AttributeValue) -> Attr {
    match value {
        AttributeValue::S(s) => Attr::S(s),
        AttributeValue::N(n) => Attr::N(n),
        AttributeValue::B(b) => Attr::B(b.into_inner()),
        AttributeValue::Bool(_) => Attr::Other("BOOL"),
        AttributeValue::Bs(_) => Attr::Other("BS"),
        AttributeValue::L(_) => Attr::Other("L"),
        AttributeValue::M(_) => Attr::Other("M"),
        AttributeValue::Ns(_) => Attr::Other("NS"),
        AttributeValue::Null(_) => Attr::Other("NULL"),
        AttributeValue::Ss(_) => Attr::Other("SS"),
        _ => Attr::Other("unknown"),
    }
}

fn item_to_sdk(item: Item) -> HashMap<String, AttributeValue> {
    item.into_iter().map(|(name, value)| (name, to_sdk(value))).collect()
}

fn build_error(err: impl std::fmt::Display) -> DdbError {
    DdbError { kind: DdbErrorKind::Other, detail: format!("cannot build the request: {err}") }
}

impl DdbApi for aws_sdk_dynamodb::Client {
    fn get_item(&self, table: &str, key: Item) -> DdbFuture<Option<Item>> {
        let call = self.get_item().table_name(table).set_key(Some(item_to_sdk(key)));
        Box::pin(async move {
            let out = call.send().await.map_err(DdbError::from_sdk)?;
            Ok(out.item.map(|item| item.into_iter().map(|(name, value)| (name, from_sdk(value))).collect()))
        })
    }

    fn transact_put(&self, table: &str, puts: Vec<ConditionalPut>) -> DdbFuture<()> {
        let items: Result<Vec<TransactWriteItem>, DdbError> = puts
            .into_iter()
            .map(|put| {
                let mut builder = Put::builder()
                    .table_name(table)
                    .set_item(Some(item_to_sdk(put.item)))
                    .condition_expression(put.condition);
                for (name, attribute) in put.names {
                    builder = builder.expression_attribute_names(name, attribute);
                }
                for (name, value) in put.values {
                    builder = builder.expression_attribute_values(name, to_sdk(value));
                }
                Ok(TransactWriteItem::builder().put(builder.build().map_err(build_error)?).build())
            })
            .collect();
        let call = items.map(|items| self.transact_write_items().set_transact_items(Some(items)));
        Box::pin(async move {
            call?.send().await.map_err(DdbError::from_sdk)?;
            Ok(())
        })
    }

    fn table_status(&self, table: &str) -> DdbFuture<Option<String>> {
        let call = self.describe_table().table_name(table);
        Box::pin(async move {
            match call.send().await.map_err(DdbError::from_sdk) {
                Ok(out) => Ok(Some(
                    out.table().and_then(|t| t.table_status()).map_or_else(|| "UNKNOWN".into(), |s| s.to_string()),
                )),
                Err(err) if err.kind == DdbErrorKind::TableNotFound => Ok(None),
                Err(err) => Err(err),
            }
        })
    }

    fn create_table(&self, table: &str) -> DdbFuture<()> {
        let schema = (|| {
            let attribute = |name: &str| {
                AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
            };
            let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
            Ok::<_, aws_sdk_dynamodb::error::BuildError>((
                vec![attribute(super::item::BRANCH_KEY_ID)?, attribute(super::item::TYPE)?],
                vec![key(super::item::BRANCH_KEY_ID, KeyType::Hash)?, key(super::item::TYPE, KeyType::Range)?],
            ))
        })();
        let call = schema.map_err(build_error).map(|(attributes, keys)| {
            self.create_table()
                .table_name(table)
                .set_attribute_definitions(Some(attributes))
                .set_key_schema(Some(keys))
                .billing_mode(BillingMode::PayPerRequest)
        });
        Box::pin(async move {
            call?.send().await.map_err(DdbError::from_sdk)?;
            Ok(())
        })
    }
}
