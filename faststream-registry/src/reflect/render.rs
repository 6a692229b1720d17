//! A `.proto` file's text from its descriptor: what the registry stores for a schema derived
//! from a message type. Compiled again, the text gives the same descriptor, its declaration
//! order included (a message's nested types are written where their map fields and groups
//! put them), so message indexes into it hold.
//!
//! Types are written relative to the package (`Order.Line` in package `shop`) where that
//! resolves to them from where they are written, else fully qualified (`.other.Money`).
//! Options are written from their decoded messages, so custom options (extensions) the
//! descriptor pool knows are kept, message-valued ones in text format.

use prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, EnumDescriptor, ExtensionDescriptor,
    FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, ServiceDescriptor, Syntax, Value,
};
use std::collections::HashSet;
use std::fmt::Write;

/// The `.proto` text of `file`; an error for what `.proto` text cannot say here (a group
/// declared by an extension).
pub(crate) fn render_file(file: &FileDescriptor) -> Result<String, String> {
    let mut out = Text::default();
    let proto3 = file.syntax() == Syntax::Proto3;
    out.line(if proto3 {
        "syntax = \"proto3\";"
    } else {
        "syntax = \"proto2\";"
    });
    if !file.package_name().is_empty() {
        out.line(&format!("package {};", file.package_name()));
    }
    let proto = file.file_descriptor_proto();
    for (index, import) in proto.dependency.iter().enumerate() {
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        let kind = if proto.public_dependency.contains(&index) {
            "public "
        } else if proto.weak_dependency.contains(&index) {
            "weak "
        } else {
            ""
        };
        out.line(&format!("import {kind}{};", quote(import)));
    }
    out.options(&file.options(), &[]);
    let ctx = Context::of(file, None);
    for message in file.messages() {
        ctx.message(&mut out, &message)?;
    }
    for enumeration in file.enums() {
        ctx.enumeration(&mut out, &enumeration);
    }
    for extension in file.extensions() {
        ctx.extension(&mut out, &extension)?;
    }
    for service in file.services() {
        ctx.service(&mut out, &service);
    }
    Ok(out.text)
}

/// The comment that names the root message for AsyncAPI's Protobuf schema parser.
const ROOT_NODE: &str = "// @RootNode";

/// A self-contained `.proto` text describing `root` alone, for an AsyncAPI document's
/// payload schema (the registry holds the file itself, see [`render_file`]).
///
/// Why this shape: the official Protobuf schema parser (`@asyncapi/protobuf-schema-parser`,
/// `findRootItem`) takes one text, loads no imports but Google's, and documents the single
/// message of it (nested ones included) that no other message names as a field type, by
/// comparing each field's type *as written* with each message's simple name; when several
/// remain, the one whose comment holds `@RootNode`. So the text holds `root`'s top-level
/// declaration and those of every type it uses, transitively (an imported file's too),
/// each at its full name; every type is written fully qualified (`.shop.v1.Origin`), which
/// never equals a simple name, so every message is a candidate and `root`, marked
/// `@RootNode`, is the one documented, whatever the file around it holds. The package is
/// the types' common one; the rest of a package's name is nested messages (`message
/// google { message protobuf { ... } }`), which keeps every full name. Options that are
/// not descriptor.proto's own, services and extensions are left out: they do not change
/// the wire format.
pub(crate) fn render_document(root: &MessageDescriptor) -> Result<String, String> {
    let declarations = used_declarations(root);
    // One text has one syntax, and each type's fields are written in its own file's: types
    // from proto2 and proto3 files together would not compile (labels, `required`,
    // defaults), so such a message is not rendered alone.
    let syntax = root.parent_file().syntax();
    if let Some(other) = declarations
        .iter()
        .find(|declaration| declaration.file().syntax() != syntax)
    {
        return Err(format!(
            "`{}` uses types of a file of another syntax ({})",
            root.full_name(),
            other.file().name()
        ));
    }
    let package_of = |declaration: &Declaration| declaration.file().package_name().to_owned();
    let common = declarations
        .iter()
        .map(package_of)
        .reduce(|common, package| common_package(&common, &package))
        .unwrap_or_default();
    let mut out = Text {
        no_custom_options: true,
        ..Text::default()
    };
    out.line(&format!(
        "// {} and the types it uses: the message of this payload.",
        root.full_name()
    ));
    out.line(if root.parent_file().syntax() == Syntax::Proto3 {
        "syntax = \"proto3\";"
    } else {
        "syntax = \"proto2\";"
    });
    if !common.is_empty() {
        out.line(&format!("package {common};"));
    }
    // By package, so that a package's nested messages are opened once.
    let mut by_package: Vec<(Vec<String>, &Declaration)> = declarations
        .iter()
        .map(|declaration| {
            let package = package_of(declaration);
            let rest = package
                .strip_prefix(&common)
                .unwrap_or(&package)
                .split('.')
                .filter(|segment| !segment.is_empty())
                .map(str::to_owned)
                .collect();
            (rest, declaration)
        })
        .collect();
    by_package.sort_by(|a, b| a.0.cmp(&b.0));
    let mut open: Vec<String> = Vec::new();
    for (segments, declaration) in by_package {
        let shared = open
            .iter()
            .zip(&segments)
            .take_while(|(a, b)| a == b)
            .count();
        while open.len() > shared {
            open.pop();
            out.close();
        }
        for segment in &segments[shared..] {
            out.open(&format!("message {segment}"));
            open.push(segment.clone());
        }
        let file = declaration.file();
        let ctx = Context::of(&file, Some(root.full_name()));
        match declaration {
            Declaration::Message(message) => ctx.message(&mut out, message)?,
            Declaration::Enum(enumeration) => ctx.enumeration(&mut out, enumeration),
        }
    }
    for _ in open {
        out.close();
    }
    Ok(out.text)
}

/// A top-level message or enum of a file.
#[derive(PartialEq)]
enum Declaration {
    Message(MessageDescriptor),
    Enum(EnumDescriptor),
}

impl Declaration {
    fn file(&self) -> FileDescriptor {
        match self {
            Declaration::Message(message) => message.parent_file(),
            Declaration::Enum(enumeration) => enumeration.parent_file(),
        }
    }
}

/// The top-level declaration `message` is in.
fn outermost(message: &MessageDescriptor) -> MessageDescriptor {
    let mut top = message.clone();
    while let Some(parent) = top.parent_message() {
        top = parent;
    }
    top
}

/// `root`'s top-level declaration first, then those of the types its fields use, and so on:
/// every type a field of a written message names is written too.
fn used_declarations(root: &MessageDescriptor) -> Vec<Declaration> {
    let mut found = vec![Declaration::Message(outermost(root))];
    let mut next = 0;
    while next < found.len() {
        let mut messages = match &found[next] {
            Declaration::Message(message) => vec![message.clone()],
            Declaration::Enum(_) => Vec::new(),
        };
        while let Some(message) = messages.pop() {
            messages.extend(message.child_messages());
            for field in message.fields() {
                let used = match field.kind() {
                    Kind::Message(used) => Declaration::Message(outermost(&used)),
                    Kind::Enum(used) => match used.parent_message() {
                        Some(parent) => Declaration::Message(outermost(&parent)),
                        None => Declaration::Enum(used),
                    },
                    _ => continue,
                };
                if !found.contains(&used) {
                    found.push(used);
                }
            }
        }
        next += 1;
    }
    found
}

/// The longest package both are in (`shop` of `shop.v1` and `shop.common`).
fn common_package(a: &str, b: &str) -> String {
    let shared: Vec<&str> = a
        .split('.')
        .zip(b.split('.'))
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect();
    shared.join(".")
}

/// The text being written, and its indentation.
#[derive(Default)]
struct Text {
    text: String,
    depth: usize,
    /// Leaves custom options (extensions of descriptor.proto's options) out: a document's
    /// text does not hold their definitions, and they do not change the wire format.
    no_custom_options: bool,
}

impl Text {
    fn line(&mut self, line: &str) {
        for _ in 0..self.depth {
            self.text.push_str("  ");
        }
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn open(&mut self, header: &str) {
        self.line(&format!("{header} {{"));
        self.depth += 1;
    }

    fn close(&mut self) {
        self.depth -= 1;
        self.line("}");
    }

    /// `option name = value;` for each option set in `options`, but those in `skip`.
    fn options(&mut self, options: &DynamicMessage, skip: &[&str]) {
        for assignment in assignments(options, skip, !self.no_custom_options) {
            self.line(&format!("option {assignment};"));
        }
    }
}

/// What every declaration of the file is written under.
struct Context<'a> {
    proto3: bool,
    package: &'a str,
    /// `{package}.`, or nothing without a package.
    package_prefix: String,
    pool: &'a DescriptorPool,
    /// Writing a document's text ([`render_document`]): the full name of the message on
    /// the wire, which is marked as the root.
    document_root: Option<&'a str>,
}

impl<'a> Context<'a> {
    fn of(file: &'a FileDescriptor, document_root: Option<&'a str>) -> Self {
        let package = file.package_name();
        Self {
            proto3: file.syntax() == Syntax::Proto3,
            package,
            package_prefix: if package.is_empty() {
                String::new()
            } else {
                format!("{package}.")
            },
            pool: file.parent_pool(),
            document_root,
        }
    }

    /// The name of type `full` as written in `scope` (a message's full name, or the
    /// package): relative to the package when no message scope between `scope` and the
    /// package holds a type of the same first name (which protobuf's name resolution would
    /// find first), else fully qualified.
    fn type_name(&self, full: &str, scope: &str) -> String {
        if self.document_root.is_some() {
            // See `render_document`: a fully qualified name never matches a message's own.
            return format!(".{full}");
        }
        let Some(relative) = full.strip_prefix(&self.package_prefix) else {
            return format!(".{full}");
        };
        let first = relative.split('.').next().unwrap_or(relative);
        let mut at = scope;
        while at.len() > self.package.len() {
            let shadow = format!("{at}.{first}");
            if self.pool.get_message_by_name(&shadow).is_some()
                || self.pool.get_enum_by_name(&shadow).is_some()
            {
                return format!(".{full}");
            }
            at = at.rsplit_once('.').map_or("", |(parent, _)| parent);
        }
        relative.to_owned()
    }

    /// A field's type as `.proto` spells it, written in `scope`: a scalar's name, a
    /// message's or enum's name.
    fn kind_name(&self, kind: &Kind, scope: &str) -> String {
        match kind {
            Kind::Message(message) => self.type_name(message.full_name(), scope),
            Kind::Enum(enumeration) => self.type_name(enumeration.full_name(), scope),
            scalar => scalar_name(scalar).to_owned(),
        }
    }

    fn message(&self, out: &mut Text, message: &MessageDescriptor) -> Result<(), String> {
        if self.document_root == Some(message.full_name()) {
            out.line(ROOT_NODE);
        }
        out.open(&format!("message {}", message.name()));
        self.message_body(out, message)?;
        out.close();
        Ok(())
    }

    /// A message's options, fields (with oneofs, maps and groups), nested types, reserved
    /// numbers and names, extension ranges and extensions.
    fn message_body(&self, out: &mut Text, message: &MessageDescriptor) -> Result<(), String> {
        out.options(&message.options(), &["map_entry"]);
        let nested: Vec<MessageDescriptor> = message.child_messages().collect();
        // A map field's entry type and a group's type are declared by their field: the
        // nested types before them are written first, so the order stays the descriptor's.
        let mut written = 0;
        let mut oneofs_written = HashSet::new();
        let fields = declared_fields(message);
        for field in &fields {
            match field
                .containing_oneof()
                .filter(|oneof| !oneof.is_synthetic())
            {
                None => {
                    self.declared_by(out, field, &nested, &mut written)?;
                    self.field(out, message, field, Label::Written)?;
                }
                Some(oneof) => {
                    if oneofs_written.insert(oneof.name().to_owned()) {
                        let members: Vec<&FieldDescriptor> = fields
                            .iter()
                            .filter(|member| member.containing_oneof().as_ref() == Some(&oneof))
                            .collect();
                        for member in &members {
                            self.declared_by(out, member, &nested, &mut written)?;
                        }
                        out.open(&format!("oneof {}", oneof.name()));
                        out.options(&oneof.options(), &[]);
                        for member in members {
                            self.field(out, message, member, Label::None)?;
                        }
                        out.close();
                    }
                }
            }
        }
        self.nested_until(out, &nested, &mut written, nested.len())?;
        for enumeration in message.child_enums() {
            self.enumeration(out, &enumeration);
        }
        for range in message.extension_ranges() {
            let last = last_of(message, "extension", range.start, range.end)?;
            out.line(&format!("extensions {};", range_text(range.start, last)));
        }
        let reserved = message
            .reserved_ranges()
            .map(|range| {
                let last = last_of(message, "reserved", range.start, range.end)?;
                Ok(range_text(range.start, last))
            })
            .collect::<Result<Vec<String>, String>>()?;
        reserved_line(out, &reserved, message.reserved_names());
        // A document leaves extensions out: they extend types it may not hold.
        let extensions = message
            .child_extensions()
            .filter(|_| self.document_root.is_none());
        for extension in extensions {
            self.extension(out, &extension)?;
        }
        Ok(())
    }

    /// Before a map field or a group: the nested types declared before its own, which it
    /// declares.
    fn declared_by(
        &self,
        out: &mut Text,
        field: &FieldDescriptor,
        nested: &[MessageDescriptor],
        written: &mut usize,
    ) -> Result<(), String> {
        if let Some(declared) = declared_type(field) {
            let at = type_index(&declared);
            self.nested_until(out, nested, written, at)?;
            *written = (*written).max(at + 1);
        }
        Ok(())
    }

    /// Writes the nested types from `*written` up to `end` (exclusive) that no field declares.
    fn nested_until(
        &self,
        out: &mut Text,
        nested: &[MessageDescriptor],
        written: &mut usize,
        end: usize,
    ) -> Result<(), String> {
        while *written < end.min(nested.len()) {
            let message = &nested[*written];
            if !message.is_map_entry() && !is_group_type(message) {
                self.message(out, message)?;
            }
            *written += 1;
        }
        Ok(())
    }

    /// A field of `message`.
    fn field(
        &self,
        out: &mut Text,
        message: &MessageDescriptor,
        field: &FieldDescriptor,
        label: Label,
    ) -> Result<(), String> {
        let scope = message.full_name();
        let proto = field.field_descriptor_proto();
        let label = match label {
            Label::None => "",
            Label::Written => {
                self.label(field.cardinality(), field.is_map(), proto.proto3_optional())
            }
        };
        let options = field_options(field.options(), proto, !out.no_custom_options);
        if field.is_group() {
            let Kind::Message(group) = field.kind() else {
                return Err(format!(
                    "group field {} has no message type",
                    field.full_name()
                ));
            };
            out.open(&format!(
                "{label}group {} = {}{options}",
                group.name(),
                field.number()
            ));
            self.message_body(out, &group)?;
            out.close();
            return Ok(());
        }
        let type_name = match field.kind() {
            Kind::Message(entry) if field.is_map() => format!(
                "map<{}, {}>",
                self.kind_name(&entry.map_entry_key_field().kind(), scope),
                self.kind_name(&entry.map_entry_value_field().kind(), scope)
            ),
            kind => self.kind_name(&kind, scope),
        };
        out.line(&format!(
            "{label}{type_name} {} = {}{options};",
            field.name(),
            field.number()
        ));
        Ok(())
    }

    fn extension(&self, out: &mut Text, extension: &ExtensionDescriptor) -> Result<(), String> {
        if extension.is_group() {
            return Err(format!(
                "extension {} is a group, which this renderer does not write",
                extension.full_name()
            ));
        }
        let parent = extension.parent_message();
        let scope = parent.as_ref().map_or(self.package, |m| m.full_name());
        let proto = extension.field_descriptor_proto();
        let label = self.label(extension.cardinality(), false, proto.proto3_optional());
        let options = field_options(extension.options(), proto, !out.no_custom_options);
        out.open(&format!(
            "extend {}",
            self.type_name(extension.containing_message().full_name(), scope)
        ));
        out.line(&format!(
            "{label}{} {} = {}{options};",
            self.kind_name(&extension.kind(), scope),
            extension.name(),
            extension.number()
        ));
        out.close();
        Ok(())
    }

    /// A field's label: proto2 spells each, proto3 only `repeated` and explicit `optional`;
    /// a map field has none.
    fn label(&self, cardinality: Cardinality, map: bool, proto3_optional: bool) -> &'static str {
        match cardinality {
            _ if map => "",
            Cardinality::Repeated => "repeated ",
            Cardinality::Required => "required ",
            Cardinality::Optional if !self.proto3 || proto3_optional => "optional ",
            Cardinality::Optional => "",
        }
    }

    fn enumeration(&self, out: &mut Text, enumeration: &EnumDescriptor) {
        out.open(&format!("enum {}", enumeration.name()));
        out.options(&enumeration.options(), &[]);
        // In declaration order (`values()` sorts by number), aliases included.
        let values = enumeration
            .enum_descriptor_proto()
            .value
            .iter()
            .filter_map(|value| enumeration.get_value_by_name(value.name()));
        for value in values {
            let options = bracketed(assignments(&value.options(), &[], !out.no_custom_options));
            out.line(&format!("{} = {}{options};", value.name(), value.number()));
        }
        let reserved: Vec<String> = enumeration
            .reserved_ranges()
            .map(|range| range_text(*range.start(), *range.end()))
            .collect();
        reserved_line(out, &reserved, enumeration.reserved_names());
        out.close();
    }

    fn service(&self, out: &mut Text, service: &ServiceDescriptor) {
        out.open(&format!("service {}", service.name()));
        out.options(&service.options(), &[]);
        for method in service.methods() {
            let stream = |yes: bool| if yes { "stream " } else { "" };
            let signature = format!(
                "rpc {}({}{}) returns ({}{})",
                method.name(),
                stream(method.is_client_streaming()),
                self.type_name(method.input().full_name(), self.package),
                stream(method.is_server_streaming()),
                self.type_name(method.output().full_name(), self.package)
            );
            let options = assignments(&method.options(), &[], !out.no_custom_options);
            if options.is_empty() {
                out.line(&format!("{signature};"));
            } else {
                out.open(&signature);
                for assignment in options {
                    out.line(&format!("option {assignment};"));
                }
                out.close();
            }
        }
        out.close();
    }
}

/// Whether a field's label is written (a oneof's members have none).
#[derive(Clone, Copy)]
enum Label {
    Written,
    None,
}

/// A message's fields in declaration order (`fields()` sorts them by number).
fn declared_fields(message: &MessageDescriptor) -> Vec<FieldDescriptor> {
    message
        .descriptor_proto()
        .field
        .iter()
        .filter_map(|field| message.get_field_by_name(field.name()))
        .collect()
}

/// The nested type a map field or a group declares.
fn declared_type(field: &FieldDescriptor) -> Option<MessageDescriptor> {
    match field.kind() {
        Kind::Message(message) if field.is_map() || field.is_group() => Some(message),
        _ => None,
    }
}

/// Whether `message` is a group's type (declared by its field, not on its own).
fn is_group_type(message: &MessageDescriptor) -> bool {
    message.parent_message().is_some_and(|parent| {
        declared_fields(&parent)
            .iter()
            .any(|field| field.is_group() && declared_type(field).as_ref() == Some(message))
    })
}

/// A nested message's index among its parent's nested types.
fn type_index(message: &MessageDescriptor) -> usize {
    message
        .path()
        .last()
        .and_then(|index| usize::try_from(*index).ok())
        .unwrap_or(0)
}

/// A scalar type's name.
fn scalar_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Double => "double",
        Kind::Float => "float",
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Uint32 => "uint32",
        Kind::Uint64 => "uint64",
        Kind::Sint32 => "sint32",
        Kind::Sint64 => "sint64",
        Kind::Fixed32 => "fixed32",
        Kind::Fixed64 => "fixed64",
        Kind::Sfixed32 => "sfixed32",
        Kind::Sfixed64 => "sfixed64",
        Kind::Bool => "bool",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message(_) | Kind::Enum(_) => "",
    }
}

/// A field's `[...]`: its default (proto2), its JSON name when not the default one, and its
/// options.
fn field_options(
    options: DynamicMessage,
    proto: &prost_reflect::prost_types::FieldDescriptorProto,
    custom: bool,
) -> String {
    let mut all = Vec::new();
    if let Some(default) = &proto.default_value {
        let literal = match proto.r#type() {
            prost_reflect::prost_types::field_descriptor_proto::Type::String => quote(default),
            // Descriptors hold a bytes default C-escaped already.
            prost_reflect::prost_types::field_descriptor_proto::Type::Bytes => {
                format!("\"{default}\"")
            }
            // A float written as a whole number (`1e30` is held as "1000...0") would be an
            // integer literal too large to compile back.
            prost_reflect::prost_types::field_descriptor_proto::Type::Float
            | prost_reflect::prost_types::field_descriptor_proto::Type::Double => default
                .parse::<f64>()
                .map_or_else(|_| default.clone(), float),
            _ => default.clone(),
        };
        all.push(format!("default = {literal}"));
    }
    if let Some(json_name) = &proto.json_name {
        if *json_name != default_json_name(proto.name()) {
            all.push(format!("json_name = {}", quote(json_name)));
        }
    }
    all.extend(assignments(&options, &[], custom));
    bracketed(all)
}

fn bracketed(assignments: Vec<String>) -> String {
    if assignments.is_empty() {
        String::new()
    } else {
        format!(" [{}]", assignments.join(", "))
    }
}

/// protoc's JSON name of a field: underscores dropped, the letter after each capitalised.
fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `name = value` for each option set in `options` (one per element of a repeated one),
/// custom options as `(full.name)` (with `custom`); those in `skip` left out.
fn assignments(options: &DynamicMessage, skip: &[&str], custom: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (field, value) in options.fields() {
        if !skip.contains(&field.name()) {
            push_assignments(&mut out, field.name(), &field.kind(), value);
        }
    }
    for (extension, value) in options.extensions().filter(|_| custom) {
        let name = format!("({})", extension.full_name());
        push_assignments(&mut out, &name, &extension.kind(), value);
    }
    out
}

fn push_assignments(out: &mut Vec<String>, name: &str, kind: &Kind, value: &Value) {
    match value {
        Value::List(values) => {
            for value in values {
                push_assignments(out, name, kind, value);
            }
        }
        value => out.push(format!("{name} = {}", literal(kind, value))),
    }
}

/// An option's value as `.proto` spells it.
fn literal(kind: &Kind, value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::F32(n) => float(f64::from(*n)),
        Value::F64(n) => float(*n),
        Value::String(s) => quote(s),
        Value::Bytes(bytes) => {
            let mut out = String::from("\"");
            for byte in bytes.iter() {
                escape_byte(&mut out, *byte);
            }
            out.push('"');
            out
        }
        Value::EnumNumber(number) => match kind {
            Kind::Enum(enumeration) => enumeration
                .get_value(*number)
                .map(|value| value.name().to_owned())
                .unwrap_or_else(|| number.to_string()),
            _ => number.to_string(),
        },
        Value::Message(message) => format!("{{ {} }}", message.to_text_format()),
        // Options are messages of descriptor.proto and their extensions: no map fields.
        Value::List(_) | Value::Map(_) => String::new(),
    }
}

fn float(n: f64) -> String {
    if n.is_nan() {
        "nan".into()
    } else if n.is_infinite() {
        if n > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{n:?}")
    }
}

/// A string literal: quotes, backslashes and control characters escaped.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c.is_ascii() {
            escape_byte(&mut out, c as u8);
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn escape_byte(out: &mut String, byte: u8) {
    match byte {
        b'"' => out.push_str("\\\""),
        b'\\' => out.push_str("\\\\"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        b'\t' => out.push_str("\\t"),
        0x20..=0x7e => out.push(byte as char),
        _ => {
            let _ = write!(out, "\\{byte:03o}");
        }
    }
}

/// `a` or `a to b`.
/// The last number of a descriptor's half-open range `start..end` of `message`; an error for
/// an empty range (a descriptor built by hand can hold one: `end` unset reads as 0).
fn last_of(message: &MessageDescriptor, what: &str, start: u32, end: u32) -> Result<u32, String> {
    end.checked_sub(1)
        .filter(|last| *last >= start)
        .ok_or_else(|| {
            format!(
                "message `{}` has an empty {what} range ({start} to {end}, end exclusive)",
                message.full_name()
            )
        })
}

fn range_text<T: PartialEq + std::fmt::Display>(start: T, end: T) -> String {
    if start == end {
        start.to_string()
    } else {
        format!("{start} to {end}")
    }
}

fn reserved_line<'a>(out: &mut Text, ranges: &[String], names: impl Iterator<Item = &'a str>) {
    if !ranges.is_empty() {
        out.line(&format!("reserved {};", ranges.join(", ")));
    }
    let names: Vec<String> = names.map(quote).collect();
    if !names.is_empty() {
        out.line(&format!("reserved {};", names.join(", ")));
    }
}
