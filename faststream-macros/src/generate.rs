//! Generate: turns a checked [`Subscriber`] into the unit struct, its `call` and `config`
//! functions and its `IntoSubscriber` impl. Dispatch itself stays in the `Handler` trait: the
//! generated adapter is an ordinary async fn whose parameters are extractors
//! (`FromMessageParts`) in their order, then the one parameter that may take the payload (a
//! plain handler's body parameter must come last).
//!
//! # Extractor or payload: decided by the compiler, per parameter
//!
//! `validate` leaves unmarked parameters as *slots* (see its module docs). The code generated
//! here never guesses from a type's name; wherever it must know what a slot is, it asks the
//! concrete type through the autoref probes of `faststream_core::extract::param_probe`
//! (`(&&&&Probe::<T>::new()).method()` picks the impl for `T: FromMessageParts`, else
//! `T: DeserializeOwned`, else `T: FromMessage`):
//!
//! - One slot: the adapter takes it as it is, so `FromMessage` decodes the payload or runs the
//!   extractor; the payload schema comes from `SlotSchema` (none for an extractor, `{}` for a
//!   payload type without `JsonSchema`).
//! - Several slots: the adapter takes one generated `__FaststreamPayload` struct instead, with
//!   a field per slot, whose `FromMessage` impl counts the slots that are payload. Every slot's
//!   extraction is started first; when none waits the struct is built at once, else one future
//!   awaits them. With at most
//!   one, every slot goes through its own `FromMessage` (the payload one decodes the whole
//!   payload). With more, the payload is decoded once into `__FaststreamFields` (its
//!   `Deserialize` impl asks each slot's probe to read or skip the field named like the
//!   parameter) and extractor slots are taken from the message. The count is a constant after
//!   inlining; both branches type-check for every combination because every step goes through
//!   a probe. The schema is built the same way: an object of the payload slots' schemas
//!   (required unless `Option`), or the one payload slot's schema.
//! - A slot bound to a pattern has no field name: a compile-time check on the probes' kinds
//!   (`assert_named_field`) rejects it when another slot is payload too.

use crate::parse::Topic;
use crate::validate::{ParamKind, Payload, Subscriber, TopicSpec};
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, ReturnType, Type};

/// The probe of `ty`, as an expression: `(&&&&Probe::<ty>::new())`.
fn probe(ty: &Type) -> TokenStream {
    probe_at(ty, Span::call_site())
}

/// [`probe`] with its tokens at `span`, so errors about it point there.
fn probe_at(ty: &Type, span: Span) -> TokenStream {
    quote_spanned!(span=> (&&&&::faststream::__private::param_probe::Probe::<#ty>::new()))
}

/// The code for one subscriber.
pub(crate) fn subscriber(sub: &Subscriber) -> TokenStream {
    let func = &sub.func;
    let name = &func.sig.ident;
    let vis = &func.vis;
    let body = &func.block;
    let output = &func.sig.output;
    let inputs = &func.sig.inputs;
    let docs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let cfgs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .collect();
    let other_attrs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| !a.path().is_ident("doc") && !a.path().is_ident("cfg"))
        .collect();
    let config = config(sub);

    // Adapter parameters: the parts extractors in their order, then the one parameter that may
    // take the payload (a handler's body parameter must be its last). The arguments passed on
    // to `call` keep the original order.
    let mut adapter_params = Vec::new();
    let mut body_param = None;
    let mut call_args = Vec::new();
    let mut markers = Vec::new();
    let mut checks = Vec::new();
    let pp = quote!(::faststream::__private::param_probe);
    for (index, param) in sub.params.iter().enumerate() {
        let ty = &param.ty;
        let span = ty.span();
        let arg = format_ident!("__arg{}", index);
        match &param.kind {
            ParamKind::Extract => {
                adapter_params.push(quote!(#arg: #ty));
                call_args.push(quote!(#arg));
                checks.push(check_parts(quote!(#ty), span));
            }
            ParamKind::NotPayload => {
                adapter_params.push(quote!(#arg: #ty));
                call_args.push(quote!(#arg));
                // `assert_not_payload` below says what is wrong with a payload type here.
                checks.push(check(quote!(#ty), span));
                let probe = probe_at(ty, span);
                checks.push(quote_spanned! {span=> {
                    use ::faststream::__private::param_probe::Slot as _;
                    ::faststream::__private::param_probe::assert_not_payload(#probe.kind());
                }});
            }
            ParamKind::Header(header) => {
                let marker = format_ident!("__FaststreamHeader{}", index);
                markers.push(quote! {
                    #[doc(hidden)]
                    struct #marker;
                    impl ::faststream::__private::HeaderName for #marker {
                        const NAME: &'static str = #header;
                    }
                });
                let wrapped = quote_spanned!(span=> ::faststream::Header<#ty, #marker>);
                adapter_params.push(quote!(#arg: #wrapped));
                call_args.push(quote!(#arg.0));
                checks.push(check_parts(wrapped, span));
            }
            ParamKind::Payload => {
                let wrapped = quote_spanned!(span=> #pp::Payload<#ty>);
                body_param = Some(quote!(#arg: #wrapped));
                call_args.push(quote!(#arg.0));
                checks.push(check(quote!(#ty), span));
            }
            ParamKind::Slot { .. } => match &sub.payload {
                Payload::Slots(_) => {
                    // Bound through the generated struct.
                    let field = format_ident!("__slot{}", index);
                    call_args.push(quote!(__payload.#field));
                    checks.push(check(quote!(#ty), span));
                }
                _ => {
                    body_param = Some(quote!(#arg: #ty));
                    call_args.push(quote!(#arg));
                    checks.push(check(quote!(#ty), span));
                }
            },
        }
    }

    let mut payload_items = TokenStream::new();
    let schema = match &sub.payload {
        Payload::Ignored => None,
        Payload::Forced(index) | Payload::Single(index) => {
            let probe = probe(&sub.params[*index].ty);
            Some(quote! {{
                use #pp::SlotSchema as _;
                #probe.payload_schema()
            }})
        }
        Payload::Slots(indexes) => {
            let items = slots(sub, indexes);
            payload_items = items.items;
            checks.extend(items.checks);
            body_param = Some(quote!(__payload: __FaststreamPayload));
            let title = sub.payload_title();
            let fields = items.schema_fields;
            Some(quote! {{
                use #pp::{IsOptional as _, SlotSchema as _};
                fn __fields() -> ::std::vec::Vec<#pp::Field> {
                    ::std::vec![#(#fields),*]
                }
                fn __object(
                    __generator: &mut ::faststream::__private::schemars::r#gen::SchemaGenerator,
                ) -> ::faststream::__private::schemars::schema::Schema {
                    #pp::object_schema(#title, &__fields(), __generator)
                }
                #pp::payload_schema(&__fields(), __object)
            }})
        }
    };
    let schema_method = schema.map(|schema| {
        quote! {
            impl #name {
                #[doc(hidden)]
                fn __faststream_payload_schema() -> ::core::option::Option<
                    fn(
                        &mut ::faststream::__private::schemars::r#gen::SchemaGenerator,
                    ) -> ::faststream::__private::schemars::schema::Schema,
                > {
                    #schema
                }
            }
        }
    });
    // `#[publisher]` attributes below `#[subscriber]` are consumed before name resolution;
    // importing their paths marks the user's `use faststream::publisher` as used (and still
    // reports a path that does not resolve).
    let publisher_uses = sub.publishers.iter().map(|p| {
        let path = &p.path;
        quote!(#[allow(unused_imports)] use #path as _;)
    });
    let call_inputs = inputs.iter().map(|input| match input {
        FnArg::Typed(arg) => quote!(#arg),
        FnArg::Receiver(r) => quote!(#r),
    });

    quote! {
        #(#cfgs)*
        #(#docs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        #vis struct #name;

        #(#cfgs)*
        impl #name {
            #(#docs)*
            #(#other_attrs)*
            #vis async fn call(#(#call_inputs),*) #output #body

            /// The subscriber's configuration (topics, group, publishers, docs).
            #vis fn config() -> ::faststream::SubscriberConfig {
                #config
            }
        }

        #(#cfgs)*
        const _: () = {
            #(#publisher_uses)*
            #payload_items
            #(#markers)*
            #schema_method

            fn __faststream_assert_param<T: ::faststream::FromMessage<M>, M>() {}
            fn __faststream_assert_parts<T: ::faststream::FromMessageParts>() {}

            impl ::faststream::IntoSubscriber for #name {
                fn register<R: ::faststream::Registry>(self, registry: &mut R) {
                    #(#checks)*
                    async fn adapter(#(#adapter_params,)* #body_param) #output {
                        #name::call(#(#call_args),*).await
                    }
                    registry.add_subscriber(#name::config(), adapter);
                }
            }
        };
    }
}

/// The generated items of several slots (see the module docs).
struct SlotItems {
    /// `__FaststreamPayload`, `__FaststreamFields` and their impls.
    items: TokenStream,
    /// Compile-time checks for slots bound to patterns.
    checks: Vec<TokenStream>,
    /// One `Field { .. }` expression per slot, for the payload schema.
    schema_fields: Vec<TokenStream>,
}

/// The payload struct of several slots: its `FromMessage` impl decides per slot, by trait,
/// whether it is read from a field of the JSON payload or taken from the message.
fn slots(sub: &Subscriber, indexes: &[usize]) -> SlotItems {
    let pp = quote!(::faststream::__private::param_probe);
    let mut fields = Vec::new();
    let mut options = Vec::new();
    let mut kinds = Vec::new();
    let mut whole_start = Vec::new();
    let mut split_start = Vec::new();
    let mut ready_checks = Vec::new();
    let mut whole_ready = Vec::new();
    let mut whole_await = Vec::new();
    let mut finish = Vec::new();
    let mut read_arms = Vec::new();
    let mut names = Vec::new();
    let mut schema_fields = Vec::new();
    let mut checks = Vec::new();
    let mut slot_checks = Vec::new();
    for &index in indexes {
        let param = &sub.params[index];
        let ty = &param.ty;
        let probe = probe(ty);
        slot_checks.push(quote!(#probe.check(__cx)));
        let field = format_ident!("__slot{}", index);
        let name = match &param.kind {
            ParamKind::Slot { name: Some(name) } => Some(name.unraw().to_string()),
            _ => None,
        };
        // A pattern has no field name; `assert_named_field` keeps it from needing one.
        let label = name.clone().unwrap_or_else(|| format!("#{index}"));
        fields.push(quote!(#field: #ty));
        options.push(quote!(#field: ::core::option::Option<#ty>));
        kinds.push(quote!(#probe.is_payload()));
        whole_start.push(quote!(let #field = #probe.extract_whole(__message, __cx);));
        split_start.push(
            quote!(let #field = #probe.extract_field(__fields.#field, #label, __message, __cx);),
        );
        ready_checks.push(quote!(#field.is_ready()));
        whole_ready.push(quote!(#field: #field.into_ready()?));
        whole_await.push(quote!(#field: #field.await?));
        finish.push(quote!(#field: #probe.finish_field(self.#field, #label)?));
        match &name {
            Some(name) => {
                let position = names.len();
                names.push(name.clone());
                read_arms
                    .push(quote!(#position => #probe.read_field(&mut self.#field, #name, __map),));
                schema_fields.push(quote! {
                    #pp::Field {
                        name: #name,
                        schema: #probe.payload_schema(),
                        optional: (&&#pp::Probe::<#ty>::new()).is_optional(),
                    }
                });
            }
            None => {
                schema_fields.push(quote! {
                    #pp::Field {
                        name: #label,
                        schema: #probe.payload_schema(),
                        optional: false,
                    }
                });
                let span = param.pat_span;
                let unnamed = probe_at(ty, span);
                for &other in indexes.iter().filter(|&&other| other != index) {
                    let other = probe_at(&sub.params[other].ty, span);
                    checks.push(quote_spanned! {span=> {
                        use ::faststream::__private::param_probe::Slot as _;
                        ::faststream::__private::param_probe::assert_named_field(#unnamed.kind(), #other.kind());
                    }});
                }
            }
        }
    }
    // Every slot's extraction done without waiting (always, unless a dependency must wait):
    // the struct now, without allocating; else one future awaiting them.
    let join = quote! {{
        if true #(&& #ready_checks)* {
            let __now = move || -> ::core::result::Result<Self, ::faststream::extract::ExtractError> {
                ::core::result::Result::Ok(Self { #(#whole_ready,)* })
            };
            ::faststream::extract::Extraction::from(__now())
        } else {
            ::faststream::extract::Extraction::pending(async move {
                ::core::result::Result::Ok(Self { #(#whole_await,)* })
            })
        }
    }};
    let items = quote! {
        #[doc(hidden)]
        struct __FaststreamPayload { #(#fields,)* }

        impl ::faststream::FromMessage for __FaststreamPayload {
            fn check(
                __cx: &::faststream::extract::CheckContext<'_>,
            ) -> ::core::result::Result<(), ::faststream::extract::ExtractError> {
                use #pp::Slot as _;
                #(#slot_checks?;)*
                ::core::result::Result::Ok(())
            }

            fn from_message(
                __message: &::faststream::Message,
                __cx: &::faststream::extract::MessageContext<'_>,
            ) -> ::faststream::extract::Extraction<Self> {
                use #pp::Slot as _;
                let __payload_slots = [#(#kinds),*].into_iter().filter(|__p| *__p).count();
                if __payload_slots < 2 {
                    #(#whole_start)*
                    return #join;
                }
                let __fields =
                    match <__FaststreamFields as ::faststream::FromMessage>::from_message(__message, __cx).into_ready() {
                        ::core::result::Result::Ok(__fields) => __fields,
                        ::core::result::Result::Err(__error) => return ::faststream::extract::Extraction::failed(__error),
                    };
                #(#split_start)*
                #join
            }
        }

        #[doc(hidden)]
        #[derive(Default)]
        struct __FaststreamFields { #(#options,)* }

        impl #pp::Fields for __FaststreamFields {
            const NAMES: &'static [&'static str] = &[#(#names),*];

            fn read_field<'de, __A: ::faststream::__private::serde::de::MapAccess<'de>>(
                &mut self,
                __index: usize,
                __map: &mut __A,
            ) -> ::core::result::Result<(), __A::Error> {
                use #pp::Slot as _;
                match __index {
                    #(#read_arms)*
                    _ => __map
                        .next_value::<::faststream::__private::serde::de::IgnoredAny>()
                        .map(::core::mem::drop),
                }
            }

            fn finish<__E: ::faststream::__private::serde::de::Error>(
                self,
            ) -> ::core::result::Result<Self, __E> {
                use #pp::Slot as _;
                ::core::result::Result::Ok(Self { #(#finish,)* })
            }
        }

        impl<'de> ::faststream::__private::serde::Deserialize<'de> for __FaststreamFields {
            fn deserialize<__D: ::faststream::__private::serde::Deserializer<'de>>(
                __deserializer: __D,
            ) -> ::core::result::Result<Self, __D::Error> {
                #pp::deserialize_fields(__deserializer)
            }
        }
    };
    SlotItems {
        items,
        checks,
        schema_fields,
    }
}

/// A call that fails, spanned on the user's parameter type, when it is not `FromMessage`.
fn check(ty: TokenStream, span: Span) -> TokenStream {
    quote_spanned!(span=> __faststream_assert_param::<#ty, _>();)
}

/// A call that fails, spanned on the user's parameter type, when it is not
/// `FromMessageParts` (every parameter but the payload).
fn check_parts(ty: TokenStream, span: Span) -> TokenStream {
    quote_spanned!(span=> __faststream_assert_parts::<#ty>();)
}

/// An `Option<SchemaFn>` expression: the schema of what the handler publishes, from its return
/// type (see `faststream_core::reply::schema_probe`): `Result<T, E>` and `Response<T>` publish
/// `T`; `()`, a missing return type and a type that is not `JsonSchema` give `None`.
fn reply_schema(output: &ReturnType) -> TokenStream {
    let none = quote!(::core::option::Option::None);
    let ty = match output {
        ReturnType::Type(_, ty) if !mentions_impl(ty.to_token_stream()) => ty,
        // Nothing returned, or an `impl Trait` that cannot be named here.
        _ => return none,
    };
    // Only the traits are imported (unnamed): a user type called `Probe` stays visible in `#ty`.
    quote! {{
        use ::faststream::__private::schema_probe::{
            StripResponse as _, StripResult as _, ToSchema as _,
        };
        let __probe = ::faststream::__private::schema_probe::Probe::<#ty>::new();
        let __probe = (&&__probe).strip_result();
        let __probe = (&&__probe).strip_response();
        (&&&__probe).schema()
    }}
}

/// Whether a type contains `impl Trait`.
fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => mentions_impl(group.stream()),
        _ => false,
    })
}

/// A topic as a `String` expression: a literal, the user's expression (its type errors
/// pointing at it), or the environment variable read when the subscriber is registered.
fn topic(spec: &TopicSpec) -> TokenStream {
    match spec {
        TopicSpec::Given(Topic::Lit(lit)) => quote!(::std::string::String::from(#lit)),
        TopicSpec::Given(Topic::Expr(expr)) => quote_spanned! {expr.span()=>
            ::core::convert::Into::<::std::string::String>::into(#expr)
        },
        TopicSpec::Env { var, default } => {
            quote!(::faststream::__private::topic_from_env(#var, #default))
        }
    }
}

/// The body of `config()`.
fn config(sub: &Subscriber) -> TokenStream {
    let name = sub.name();
    let topics: Vec<TokenStream> = sub.topics.iter().map(topic).collect();
    // A pattern subscriber has no topics of its own: `pattern` sets them from the template.
    let topics = if topics.is_empty() {
        quote!(::core::iter::empty::<::std::string::String>())
    } else {
        quote!([#(#topics),*])
    };
    let mut setters = Vec::new();
    if let Some(pattern) = &sub.pattern {
        let template = topic(&TopicSpec::Given(pattern.clone()));
        setters.push(quote!(__config = __config.pattern(#template);));
    }
    if let Some(group_id) = &sub.group_id {
        setters.push(quote!(__config = __config.group_id(#group_id);));
    }
    if let Some(policy) = &sub.ack_policy {
        setters.push(quote!(__config = __config.ack_policy(::faststream::AckPolicy::#policy);));
    }
    if let Some(reset) = &sub.auto_offset_reset {
        setters.push(
            quote!(__config = __config.auto_offset_reset(::faststream::OffsetReset::#reset);),
        );
    }
    if let Some(limit) = &sub.max_concurrency {
        setters.push(quote!(__config = __config.max_concurrency(#limit);));
    }
    if let Some(lanes) = &sub.lanes {
        setters.push(quote!(__config = __config.lanes(#lanes);));
    }
    if let Some(exactly_once) = &sub.exactly_once {
        setters.push(match &exactly_once.interval_ms {
            None => quote!(__config = __config.exactly_once(true);),
            Some(ms) => quote!(__config = __config.transactions(
                ::faststream::TransactionCommits::every(::std::time::Duration::from_millis(#ms))
            );),
        });
    }
    if let Some(title) = &sub.title {
        setters.push(quote!(__config = __config.title(#title);));
    }
    if let Some(description) = &sub.description {
        setters.push(quote!(__config = __config.description(#description);));
    }
    if let Some(batch) = &sub.batch {
        let max_records = match &batch.max_records {
            Some(max) => quote!(#max),
            None => quote!(::core::primitive::usize::MAX),
        };
        let timeout = match &batch.timeout_ms {
            Some(ms) => quote!(::core::time::Duration::from_millis(#ms)),
            None => quote!(::faststream::batch::BatchConfig::DEFAULT_TIMEOUT),
        };
        setters.push(quote!(__config = __config.batch(#max_records, #timeout);));
    }
    if let Some(no_reply) = &sub.no_reply {
        setters.push(quote!(__config = __config.no_reply(#no_reply);));
    }
    if let Some(include) = &sub.include_in_schema {
        setters.push(quote!(__config = __config.include_in_schema(#include);));
    }
    if !sub.publishers.is_empty() {
        let schema = reply_schema(&sub.func.sig.output);
        setters.push(quote! {
            let __reply_schema = #schema;
        });
    }
    for publisher in &sub.publishers {
        let topic = topic(&publisher.topic);
        let mut fields = vec![quote!(__publisher.schema = __reply_schema;)];
        if let Some(title) = &publisher.title {
            fields.push(quote!(__publisher.title = ::core::option::Option::Some(::std::string::String::from(#title));));
        }
        if let Some(description) = &publisher.description {
            fields.push(
                quote!(__publisher.description = ::core::option::Option::Some(::std::string::String::from(#description));),
            );
        }
        if let Some(include) = &publisher.include_in_schema {
            fields.push(quote!(__publisher.include_in_schema = #include;));
        }
        if let Some(batch) = &publisher.batch {
            fields.push(quote!(__publisher.batch = #batch;));
        }
        setters.push(quote! {
            __config = __config.publisher({
                #[allow(unused_mut)]
                let mut __publisher = ::faststream::PublisherConfig::new(#topic);
                #(#fields)*
                __publisher
            });
        });
    }
    if sub.payload != Payload::Ignored {
        setters.push(quote! {
            // Through the builder, not a field: the generated code does not depend on how
            // `SubscriberConfig` groups its fields.
            if let ::core::option::Option::Some(__schema) = Self::__faststream_payload_schema() {
                __config = __config.payload_schema(__schema);
            }
        });
    }
    quote! {
        #[allow(unused_mut)]
        let mut __config = ::faststream::SubscriberConfig::new(#name, #topics);
        #(#setters)*
        __config
    }
}
