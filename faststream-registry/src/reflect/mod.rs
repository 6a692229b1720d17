//! The Protobuf schema of a message type from its descriptor (`prost_reflect`), as
//! Confluent's serializers derive it: the message's file as `.proto` text, the files it
//! imports as schema references, and the message's indexes in its file for the wire format.

mod render;

use crate::protobuf::ProtoFile;
use prost_reflect::{FileDescriptor, MessageDescriptor};

/// Imports the registry knows without references, as Confluent's serializers skip them
/// (`skip.known.types`): the well-known types and Google's and Confluent's common types.
const KNOWN: [&str; 3] = ["google/protobuf/", "google/type/", "confluent/"];

/// `file` as the registry holds it: its text and, recursively, its imports but the known
/// ones.
pub(crate) fn proto_file(file: &FileDescriptor) -> Result<ProtoFile, String> {
    let imports = file
        .dependencies()
        .filter(|import| !KNOWN.iter().any(|known| import.name().starts_with(known)))
        .map(|import| proto_file(&import))
        .collect::<Result<_, _>>()?;
    Ok(ProtoFile {
        name: file.name().to_owned(),
        text: render::render_file(file)?,
        imports,
    })
}

/// The `.proto` text an AsyncAPI document shows for `message`: it alone as the root, with
/// the types it uses (see [`render::render_document`]).
pub(crate) fn document(message: &MessageDescriptor) -> Result<String, String> {
    render::render_document(message)
}

/// [`document`] for the message at `indexes` in a `.proto` file given as text (importing
/// only Google's well-known types), compiled here; `None` when it does not compile or has
/// no message there.
pub(crate) fn document_of_text(text: &str, indexes: &[i32]) -> Option<String> {
    use protox::file::{File, FileResolver, GoogleFileResolver};
    const NAME: &str = "payload.proto";
    struct Text(String);
    impl FileResolver for Text {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            if name == NAME {
                File::from_source(NAME, &self.0)
            } else {
                GoogleFileResolver::new().open_file(name)
            }
        }
    }
    let mut compiler = protox::Compiler::with_file_resolver(Text(text.to_owned()));
    compiler.include_imports(true).include_source_info(false);
    compiler.open_file(NAME).ok()?;
    let file = compiler.descriptor_pool().get_file_by_name(NAME)?;
    let (first, nested) = indexes.split_first()?;
    let mut message = file.messages().nth(usize::try_from(*first).ok()?)?;
    for index in nested {
        let child = message
            .child_messages()
            .nth(usize::try_from(*index).ok()?)?;
        message = child;
    }
    document(&message).ok()
}

/// Where `message` is in its file: the index of its top-level message, then of each nested
/// message down to it (`[0]` the first top-level message, `[1, 0]` the first nested in the
/// second).
///
/// A descriptor's path alternates a field of its parent (top-level messages, nested types)
/// and the index in it.
pub(crate) fn message_indexes(message: &MessageDescriptor) -> Vec<i32> {
    message.path().iter().skip(1).step_by(2).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::DescriptorPool;

    const ROOT_NODE_LINE: &str = "// @RootNode";
    use protox::file::{File, FileResolver, GoogleFileResolver};

    /// Proto3: nested messages and enums, maps (declared between nested types), oneofs, an
    /// explicit `optional`, reserved numbers and names, file, message, field and enum value
    /// options, custom options (scalar and message-valued), imports of a file of the project
    /// and of a well-known type, a service, a type name shadowed in a nested scope.
    const ORDER: &str = r#"
syntax = "proto3";
package shop;
import "shop/common.proto";
import "google/protobuf/timestamp.proto";
option go_package = "example.com/shop";
option optimize_for = SPEED;

message Order {
  option (shop.common.audit) = { owner: "sales" tags: "a" tags: "b" };
  option deprecated = true;
  message Line {
    string sku = 1 [(shop.common.label) = "stock \"keeping\"\tunit"];
    uint32 quantity = 2;
    message Discount { sint32 percent = 1; }
    Discount discount = 3;
    // Shadows the top-level Refund here: that one is written fully qualified.
    message Refund { string reason = 1; }
    shop.Refund top_refund = 4;
  }
  enum Status {
    STATUS_UNSPECIFIED = 0;
    PLACED = 1;
    SHIPPED = 2 [deprecated = true];
    reserved 5 to 9;
    reserved "LOST";
  }
  int64 id = 1;
  repeated Line lines = 2;
  map<string, shop.common.Money> totals = 3;
  message AfterMap { bool flag = 1; }
  oneof payment {
    string card = 4;
    string voucher = 5 [json_name = "voucherCode"];
  }
  optional string note = 6;
  Status status = 7;
  google.protobuf.Timestamp placed_at = 8;
  map<int32, Line> by_position = 9;
  repeated int32 weights = 10 [packed = false];
  shop.common.Currency currency = 11;
  bytes receipt = 13;
  reserved 12, 15 to 20;
  reserved "legacy";
}

message Refund {
  int64 order_id = 1;
  Order.Line line = 2;
}

service Orders {
  rpc Place(Order) returns (Refund);
  rpc Watch(stream Order) returns (stream Refund) { option deprecated = true; }
}
"#;

    const COMMON: &str = r#"
syntax = "proto3";
package shop.common;
import "google/protobuf/descriptor.proto";
option java_package = "com.example.shop.common";
option java_multiple_files = true;

extend google.protobuf.FieldOptions { string label = 50001; }
extend google.protobuf.MessageOptions { Audit audit = 50002; }

message Money { string currency = 1; int64 units = 2; }
message Audit { string owner = 1; repeated string tags = 2; }
enum Currency { CURRENCY_UNSPECIFIED = 0; EUR = 1; USD = 2; }
"#;

    /// Proto2: required fields, defaults of every kind, groups (one in a oneof), extension
    /// ranges, extensions at file and message scope, an enum alias, a public import.
    const LEGACY: &str = r#"
syntax = "proto2";
package legacy;
import public "shop/common.proto";

message Box {
  required int32 id = 1;
  optional string name = 2 [default = "a \"b\"\n"];
  optional bytes raw = 3 [default = "\001\377x"];
  optional double ratio = 4 [default = inf];
  optional Kind kind = 5 [default = BIG];
  optional float scale = 9 [default = -1.5];
  enum Kind { SMALL = 1; BIG = 2; }
  repeated group Item = 6 { required int32 n = 1; }
  oneof choice {
    int32 a = 7;
    group Pick = 8 { optional int32 b = 1; }
  }
  extensions 100 to 199, 1000 to max;
  enum Alias { option allow_alias = true; X = 1; Y = 1; }
}

extend Box { optional int32 extra = 100; }

message Holder {
  extend Box { repeated string tags = 101; }
}
"#;

    /// Files by name, else the well-known ones.
    struct Sources(Vec<(String, String)>);

    impl FileResolver for Sources {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            match self.0.iter().find(|(file, _)| file == name) {
                Some((file, source)) => File::from_source(file, source),
                None => GoogleFileResolver::new().open_file(name),
            }
        }
    }

    fn compile(sources: Vec<(String, String)>, files: &[&str]) -> DescriptorPool {
        let mut compiler = protox::Compiler::with_file_resolver(Sources(sources));
        compiler.include_imports(true).include_source_info(false);
        for file in files {
            compiler
                .open_file(file)
                .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        }
        compiler.descriptor_pool()
    }

    fn originals() -> DescriptorPool {
        let sources = [
            ("shop/order.proto", ORDER),
            ("shop/common.proto", COMMON),
            ("legacy/box.proto", LEGACY),
        ];
        compile(
            sources
                .map(|(name, text)| (name.to_owned(), text.to_owned()))
                .to_vec(),
            &["shop/order.proto", "legacy/box.proto"],
        )
    }

    /// Every option of every declaration, as text, in the pool's order.
    fn all_options(pool: &DescriptorPool, file: &str) -> Vec<String> {
        let mut out = Vec::new();
        let file = pool.get_file_by_name(file).expect("file");
        out.push(file.options().to_text_format());
        let messages = pool
            .all_messages()
            .filter(|message| message.parent_file() == file);
        for message in messages {
            out.push(format!("{}: {}", message.full_name(), message.options()));
            for field in message.fields() {
                out.push(format!("{}: {}", field.full_name(), field.options()));
            }
        }
        for enumeration in pool.all_enums().filter(|e| e.parent_file() == file) {
            for value in enumeration.values() {
                out.push(format!("{}: {}", value.full_name(), value.options()));
            }
        }
        out
    }

    /// Renders `name` and its imports, compiles the texts again, and compares.
    fn assert_round_trip(name: &str) {
        let pool = &originals();
        let file = pool.get_file_by_name(name).expect("file");
        let rendered = proto_file(&file).expect("renders");
        let mut sources = Vec::new();
        let mut pending = vec![&rendered];
        while let Some(next) = pending.pop() {
            sources.push((next.name.clone(), next.text.clone()));
            pending.extend(&next.imports);
        }
        let again = compile(sources, &[name]);
        let compiled = again
            .get_file_by_name(name)
            .unwrap_or_else(|| panic!("{name}"));
        let without_positions = |file: &prost_reflect::FileDescriptor| {
            let mut proto = file.file_descriptor_proto().clone();
            proto.source_code_info = None;
            proto
        };
        assert_eq!(
            without_positions(&compiled),
            without_positions(&file),
            "{name} rendered as:\n{}",
            rendered.text
        );
        assert_eq!(
            all_options(&again, name),
            all_options(pool, name),
            "{}",
            rendered.text
        );
    }

    #[test]
    fn a_proto3_file_renders_to_text_that_compiles_to_the_same_descriptor() {
        assert_round_trip("shop/order.proto");
        assert_round_trip("shop/common.proto");
    }

    #[test]
    fn a_proto2_file_renders_to_text_that_compiles_to_the_same_descriptor() {
        assert_round_trip("legacy/box.proto");
    }

    #[test]
    fn imports_are_references_but_the_well_known_types() {
        let pool = originals();
        let order = proto_file(&pool.get_file_by_name("shop/order.proto").unwrap()).unwrap();
        let imports: Vec<&str> = order.imports.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(imports, ["shop/common.proto"], "timestamp.proto left out");
        for line in [
            "  repeated Order.Line lines = 2;",
            "  map<string, common.Money> totals = 3;",
            "    .shop.Refund top_refund = 4;",
            "  .google.protobuf.Timestamp placed_at = 8;",
            "  rpc Watch(stream Order) returns (stream Refund) {",
        ] {
            assert!(order.text.contains(line), "{line} in {}", order.text);
        }
        assert!(
            order
                .text
                .contains("import \"google/protobuf/timestamp.proto\";"),
            "still imported: {}",
            order.text
        );
        let common = &order.imports[0];
        assert!(common.imports.is_empty(), "descriptor.proto left out");
        assert!(common.text.contains("message Money {"), "{}", common.text);
        let legacy = proto_file(&pool.get_file_by_name("legacy/box.proto").unwrap()).unwrap();
        assert!(legacy.text.contains("import public \"shop/common.proto\";"));
    }

    /// A field as the wire sees it: name, number, cardinality, and its type's full name.
    fn wire_fields(message: &prost_reflect::MessageDescriptor) -> Vec<String> {
        message
            .fields()
            .map(|field| {
                let kind = match field.kind() {
                    prost_reflect::Kind::Message(m) => m.full_name().to_owned(),
                    prost_reflect::Kind::Enum(e) => e.full_name().to_owned(),
                    scalar => format!("{scalar:?}"),
                };
                format!(
                    "{} = {} {:?} {kind}",
                    field.name(),
                    field.number(),
                    field.cardinality()
                )
            })
            .collect()
    }

    /// A document's text compiles on its own (no imports), marks only the message on the
    /// wire as the root, and holds it and every type it uses at their full names, with
    /// their fields; services and extensions are left out.
    #[test]
    fn a_document_holds_the_message_and_the_types_it_uses_at_their_full_names() {
        let pool = originals();
        for name in ["shop.Refund", "shop.Order.Line.Discount", "legacy.Box"] {
            let root = pool.get_message_by_name(name).unwrap();
            let text = document(&root).expect("renders");
            assert!(!text.contains("import "), "{text}");
            assert!(
                !text.contains("service ") && !text.contains("extend "),
                "{text}"
            );
            assert_eq!(text.matches("@RootNode").count(), 1, "{text}");
            let simple = name.rsplit('.').next().unwrap();
            let marked = text
                .lines()
                .skip_while(|line| line.trim() != ROOT_NODE_LINE)
                .nth(1)
                .map(str::trim);
            assert_eq!(
                marked,
                Some(format!("message {simple} {{").as_str()),
                "{text}"
            );
            let again = compile(vec![("doc.proto".into(), text.clone())], &["doc.proto"]);
            let mut checked = 0;
            for message in pool.all_messages() {
                let Some(copy) = again.get_message_by_name(message.full_name()) else {
                    continue;
                };
                assert_eq!(wire_fields(&copy), wire_fields(&message), "{text}");
                checked += 1;
            }
            assert!(
                again.get_message_by_name(name).is_some(),
                "{name} in {text}"
            );
            assert!(checked > 0);
        }
        let refund = document(&pool.get_message_by_name("shop.Refund").unwrap()).unwrap();
        for used in [
            "message Money {",
            "enum Currency {",
            "message Timestamp {",
            "message Line {",
        ] {
            assert!(refund.contains(used), "{used} in {refund}");
        }
        assert!(!refund.contains("message Audit {"), "not used: {refund}");
    }

    #[test]
    fn message_indexes_follow_the_message_through_its_file() {
        let pool = originals();
        let indexes = |name: &str| message_indexes(&pool.get_message_by_name(name).unwrap());
        assert_eq!(indexes("shop.Order"), [0], "first top-level message");
        assert_eq!(indexes("shop.Refund"), [1], "second top-level message");
        assert_eq!(indexes("shop.Order.Line"), [0, 0], "nested");
        assert_eq!(
            indexes("shop.Order.AfterMap"),
            [0, 2],
            "after a map's entry"
        );
        assert_eq!(indexes("shop.Order.Line.Discount"), [0, 0, 0]);
        assert_eq!(indexes("shop.common.Audit"), [1]);
    }

    #[test]
    fn a_range_a_text_cannot_hold_is_an_error_not_a_panic() {
        use prost_reflect::prost_types::descriptor_proto::ReservedRange;
        use prost_reflect::prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};
        // A hand-built descriptor whose reserved range has no end (read as 0): the range
        // was rendered as `5 to end - 1`, an overflow.
        let file = FileDescriptorProto {
            name: Some("bad.proto".into()),
            package: Some("bad".into()),
            syntax: Some("proto3".into()),
            message_type: vec![DescriptorProto {
                name: Some("Bad".into()),
                reserved_range: vec![ReservedRange {
                    start: Some(5),
                    end: None,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let pool = DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] })
            .expect("prost-reflect takes it");
        let err = match proto_file(&pool.get_file_by_name("bad.proto").unwrap()) {
            Err(err) => err,
            Ok(rendered) => panic!("rendered as:\n{}", rendered.text),
        };
        assert!(err.contains("empty reserved range"), "{err}");
    }

    #[test]
    fn large_float_defaults_compile_back() {
        const BIG: &str = r#"
            syntax = "proto2";
            package big;
            message Big {
              optional double large = 1 [default = 1e30];
              optional float small = 2 [default = -2.5];
              optional double none = 3 [default = -inf];
            }
        "#;
        let source = || vec![("big.proto".to_owned(), BIG.to_owned())];
        let pool = compile(source(), &["big.proto"]);
        let file = pool.get_file_by_name("big.proto").unwrap();
        let rendered = proto_file(&file).expect("renders");
        let again = compile(
            vec![("big.proto".to_owned(), rendered.text.clone())],
            &["big.proto"],
        );
        let fields = |pool: &DescriptorPool| -> Vec<_> {
            let message = pool.get_message_by_name("big.Big").unwrap();
            message
                .fields()
                .map(|f| f.field_descriptor_proto().default_value.clone())
                .collect()
        };
        assert_eq!(fields(&again), fields(&pool), "{}", rendered.text);
    }

    #[test]
    fn a_document_of_proto2_and_proto3_types_together_is_refused() {
        const OLD: &str = r#"
            syntax = "proto2";
            package mix;
            message Old { required int32 a = 1; }
        "#;
        const NEW: &str = r#"
            syntax = "proto3";
            package mix;
            import "mix/old.proto";
            message New { Old old = 1; }
        "#;
        let pool = compile(
            vec![
                ("mix/old.proto".to_owned(), OLD.to_owned()),
                ("mix/new.proto".to_owned(), NEW.to_owned()),
            ],
            &["mix/new.proto"],
        );
        let err = document(&pool.get_message_by_name("mix.New").unwrap()).unwrap_err();
        assert!(err.contains("another syntax"), "{err}");
        // Each alone renders.
        document(&pool.get_message_by_name("mix.Old").unwrap()).expect("proto2 alone");
    }
}
