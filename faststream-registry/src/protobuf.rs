//! Protobuf schemas as the registry holds them: a `.proto` file, and the files it imports
//! as schema references, each registered under a subject of its own.

use crate::client::{RegistryError, SchemaReference, SchemaRegistry, SchemaType};
use futures::future::BoxFuture;

/// A `.proto` file: its import path, its text, and the files it imports that the registry
/// holds as references (well-known types left out: registries know them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtoFile {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) imports: Vec<ProtoFile>,
}

impl ProtoFile {
    /// A file given as text, importing nothing the registry must hold.
    pub(crate) fn text(text: String) -> Self {
        Self {
            name: String::new(),
            text,
            imports: Vec::new(),
        }
    }
}

/// The references to `imports`, each under the subject named after its import path (the
/// default of Confluent's serializers), its own imports first. With `register`, each is
/// registered there (or found registered); without, only looked up.
pub(crate) fn references<'a>(
    registry: &'a SchemaRegistry,
    imports: &'a [ProtoFile],
    register: bool,
) -> BoxFuture<'a, Result<Vec<SchemaReference>, RegistryError>> {
    Box::pin(async move {
        let mut out = Vec::with_capacity(imports.len());
        for import in imports {
            let nested = references(registry, &import.imports, register).await?;
            let subject = import.name.as_str();
            let text = import.text.as_str();
            if register {
                registry
                    .register_with_references(subject, SchemaType::Protobuf, text, &nested)
                    .await?;
            }
            let version = registry
                .version_of(subject, SchemaType::Protobuf, text, &nested)
                .await?;
            out.push(SchemaReference {
                name: import.name.clone(),
                subject: subject.to_owned(),
                version,
            });
        }
        Ok(out)
    })
}
