//! `kms-envelope branch-key create|version`: branch keys for the Hierarchical keyring, in a DynamoDB branch
//! key store (the library's `DynamoDbBranchKeyStore`).

use super::args::BranchKeyArgs;
use super::exit::Failure;

/// Runs `branch-key`: prints the new branch key id (create) or the new active version (version).
#[cfg(feature = "hierarchy-ddb")]
pub fn run(args: &BranchKeyArgs) -> Result<(), Failure> {
    use std::collections::BTreeMap;

    use kms_envelope::keyring::hierarchy::DynamoDbBranchKeyStore;

    use super::args::BranchKeyAction;
    use super::exit::Code;

    let mut context = BTreeMap::new();
    for pair in &args.ec {
        let (key, value) = pair
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| Failure::usage(format!("--ec {pair:?}: expected KEY=VALUE")))?;
        if context.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(Failure::usage(format!("--ec: key {key:?} given twice")));
        }
    }
    let clients = kms_envelope::KmsClients::from_env_blocking()
        .map_err(|e| Failure::new(Code::KeyAccess, format!("AWS configuration: {e}")))?;
    let store = DynamoDbBranchKeyStore::from_clients(&clients, &args.table, &args.kms_key, &args.logical_name)
        .map_err(|e| Failure::usage(format!("--kms-key {}: {e}", args.kms_key)))?;
    let failed =
        |e: kms_envelope::Error| Failure::new(Code::KeyAccess, format!("branch key store {}: {e}", args.table));
    let printed = match args.action {
        BranchKeyAction::Create => {
            if args.create_table {
                store.create_table_blocking().map_err(failed)?;
            }
            store.create_key_blocking(args.branch_key_id.as_deref(), &context).map_err(failed)?
        }
        BranchKeyAction::Version => {
            if !context.is_empty() || args.create_table {
                return Err(Failure::usage("--ec and --create-table are for branch-key create".into()));
            }
            let id = args
                .branch_key_id
                .as_deref()
                .ok_or_else(|| Failure::usage("branch-key version needs --branch-key-id".into()))?;
            store.version_key_blocking(id).map_err(failed)?.to_string()
        }
    };
    println!("{printed}");
    Ok(())
}

/// Without the DynamoDB store there is no `branch-key`.
#[cfg(not(feature = "hierarchy-ddb"))]
pub fn run(_args: &BranchKeyArgs) -> Result<(), Failure> {
    Err(super::features::missing("hierarchy-ddb", "branch-key"))
}
