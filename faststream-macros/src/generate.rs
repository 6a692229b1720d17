//! Generate: turns a checked [`Subscriber`] into the unit struct, its `call` and `config`
//! functions and its `IntoSubscriber` impl. Dispatch itself stays in the `Handler` trait: the
//! generated adapter is an ordinary async fn whose parameters are all `FromMessage`.

use crate::validate::{ParamKind, Payload, Subscriber};
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ReturnType};

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

    // Adapter parameters and the arguments passed on to `call`, in the original order.
    let payload_struct = format_ident!("__FaststreamPayload");
    let mut adapter_params = Vec::new();
    let mut call_args = Vec::new();
    let mut markers = Vec::new();
    let mut checks = Vec::new();
    for (index, param) in sub.params.iter().enumerate() {
        let ty = &param.ty;
        let span = ty.span();
        let arg = format_ident!("__arg{}", index);
        match &param.kind {
            ParamKind::Extractor => {
                adapter_params.push(quote!(#arg: #ty));
                call_args.push(quote!(#arg));
                checks.push(check(quote!(#ty), span));
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
                checks.push(check(wrapped, span));
            }
            ParamKind::Plain { ident } => match &sub.payload {
                Payload::Fields(_) => {
                    // Bound through the generated struct; the field has the parameter's name.
                    let field = ident
                        .clone()
                        .unwrap_or_else(|| Ident::new("__missing", span));
                    call_args.push(quote!(__payload.#field));
                }
                _ => {
                    adapter_params.push(quote!(#arg: #ty));
                    call_args.push(quote!(#arg));
                    checks.push(check(quote!(#ty), span));
                }
            },
        }
    }

    let mut payload_items = TokenStream::new();
    let schema = match &sub.payload {
        Payload::Ignored => None,
        Payload::Whole(index) => {
            let ty = &sub.params[*index].ty;
            Some(quote!(__generator.subschema_for::<#ty>()))
        }
        Payload::Fields(indexes) => {
            let title = sub.payload_title();
            let fields = indexes.iter().map(|&i| {
                let param = &sub.params[i];
                let ty = &param.ty;
                let field = match &param.kind {
                    ParamKind::Plain { ident: Some(ident) } => ident.clone(),
                    _ => Ident::new("__missing", Span::call_site()),
                };
                quote!(#field: #ty)
            });
            payload_items = quote! {
                #[derive(::faststream::__private::serde::Deserialize, ::faststream::__private::schemars::JsonSchema)]
                #[serde(crate = "::faststream::__private::serde")]
                #[schemars(crate = "::faststream::__private::schemars", title = #title)]
                #[doc(hidden)]
                struct #payload_struct { #(#fields,)* }
            };
            // The struct goes first among the adapter's parameters' positions: where the
            // first payload field was.
            let first = indexes[0];
            let position = sub.params[..first]
                .iter()
                .filter(|p| !matches!(p.kind, ParamKind::Plain { .. }))
                .count();
            adapter_params.insert(position, quote!(__payload: #payload_struct));
            Some(
                quote!(<#payload_struct as ::faststream::__private::schemars::JsonSchema>::json_schema(__generator)),
            )
        }
    };
    let schema_method = schema.map(|schema| {
        quote! {
            impl #name {
                #[doc(hidden)]
                fn __faststream_payload_schema(
                    __generator: &mut ::faststream::__private::schemars::gen::SchemaGenerator,
                ) -> ::faststream::__private::schemars::schema::Schema {
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

            fn __faststream_assert_param<T: ::faststream::FromMessage>() {}

            impl ::faststream::IntoSubscriber for #name {
                fn register<R: ::faststream::Registry>(self, registry: &mut R) {
                    #(#checks)*
                    async fn adapter(#(#adapter_params),*) #output {
                        #name::call(#(#call_args),*).await
                    }
                    registry.add_subscriber(#name::config(), adapter);
                }
            }
        };
    }
}

/// A call that fails, spanned on the user's parameter type, when it is not `FromMessage`.
fn check(ty: TokenStream, span: Span) -> TokenStream {
    quote_spanned!(span=> __faststream_assert_param::<#ty>();)
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

/// The body of `config()`.
fn config(sub: &Subscriber) -> TokenStream {
    let name = sub.name();
    let topics = &sub.topics;
    let mut setters = Vec::new();
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
    if let Some(title) = &sub.title {
        setters.push(quote!(__config.title = ::core::option::Option::Some(::std::string::String::from(#title));));
    }
    if let Some(description) = &sub.description {
        setters.push(quote!(__config = __config.description(#description);));
    }
    if let Some(include) = &sub.include_in_schema {
        setters.push(quote!(__config.include_in_schema = #include;));
    }
    if !sub.publishers.is_empty() {
        let schema = reply_schema(&sub.func.sig.output);
        setters.push(quote! {
            let __reply_schema = #schema;
        });
    }
    for publisher in &sub.publishers {
        let topic = &publisher.topic;
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
            __config.payload_schema = ::core::option::Option::Some(
                Self::__faststream_payload_schema
                    as fn(
                        &mut ::faststream::__private::schemars::gen::SchemaGenerator,
                    ) -> ::faststream::__private::schemars::schema::Schema,
            );
        });
    }
    quote! {
        #[allow(unused_mut)]
        let mut __config = ::faststream::SubscriberConfig::new(#name, [#(#topics),*]);
        #(#setters)*
        __config
    }
}
