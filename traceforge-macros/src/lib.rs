//! The `#[traceforge::cassette]` attribute. Use it through the `traceforge` crate, which
//! documents it; this crate only parses the attribute and emits calls into
//! `traceforge::__private`. Errors point at the offending token.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, ToTokens};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, ItemFn, LitStr, Path, Type};

const OPTIONS: &str = "`upstream`, `name`, `path`, `mode`, `flavor`, `ignore`, `strategy`, `crate`";
const MODES: [&str; 5] = ["off", "record", "replay", "auto", "strict"];

// Documented on its re-export, `traceforge::cassette` (docs/attribute.md).
#[proc_macro_attribute]
pub fn cassette(args: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error = syn::Error::new(Span::call_site(), "#[traceforge::cassette] goes on an `async fn` test");
            let mut out = error.to_compile_error();
            out.extend(TokenStream2::from(item));
            return out.into();
        }
    };
    match expand(args.into(), function.clone()) {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            // Still emit the function, so IDEs and later errors keep working.
            let mut out = error.to_compile_error();
            let mut function = function;
            function.attrs.retain(|a| !is_test_attribute(a));
            out.extend(quote! { #[allow(dead_code)] #function });
            out.into()
        }
    }
}

#[derive(Default)]
struct Options {
    upstreams: Vec<(LitStr, LitStr)>,
    name: Option<LitStr>,
    path: Option<LitStr>,
    mode: Option<LitStr>,
    flavor: Option<LitStr>,
    ignore: Vec<LitStr>,
    strategy: Option<LitStr>,
    crate_path: Option<Path>,
}

fn parse_options(args: TokenStream2) -> syn::Result<Options> {
    let mut options = Options::default();
    let mut seen: Vec<String> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let key = meta.path.to_token_stream().to_string();
        if seen.contains(&key) {
            return Err(meta.error(format!("`{key}` is set more than once")));
        }
        seen.push(key.clone());
        match key.as_str() {
            "upstream" => meta.parse_nested_meta(|entry| {
                let Some(name) = entry.path.get_ident() else {
                    return Err(entry.error("an upstream name is a plain identifier, e.g. `openai`"));
                };
                let name = name.to_string();
                let url: LitStr = entry.value()?.parse()?;
                let text = url.value();
                if !(text.starts_with("http://") || text.starts_with("https://")) {
                    return Err(syn::Error::new(url.span(), "an upstream URL starts with http:// or https://"));
                }
                if options.upstreams.iter().any(|(n, _)| n.value().eq_ignore_ascii_case(&name)) {
                    return Err(syn::Error::new_spanned(
                        &entry.path,
                        format!("upstream `{name}` is set more than once"),
                    ));
                }
                options.upstreams.push((LitStr::new(&name, entry.path.span()), url));
                Ok(())
            }),
            "name" => {
                let name: LitStr = meta.value()?.parse()?;
                let text = name.value();
                if text.is_empty() || text.contains(['/', '\\']) || text.ends_with(".json") {
                    return Err(syn::Error::new(
                        name.span(),
                        "`name` is a file name without directories or `.json`; use `path` for a full path",
                    ));
                }
                options.name = Some(name);
                Ok(())
            }
            "path" => {
                options.path = Some(meta.value()?.parse()?);
                Ok(())
            }
            "mode" => {
                let mode: LitStr = meta.value()?.parse()?;
                if !MODES.contains(&mode.value().as_str()) {
                    return Err(syn::Error::new(
                        mode.span(),
                        format!("unknown mode `{}`: expected one of off, record, replay, auto, strict", mode.value()),
                    ));
                }
                options.mode = Some(mode);
                Ok(())
            }
            "flavor" => {
                let flavor: LitStr = meta.value()?.parse()?;
                if !["current_thread", "multi_thread"].contains(&flavor.value().as_str()) {
                    return Err(syn::Error::new(flavor.span(), "`flavor` is \"current_thread\" or \"multi_thread\""));
                }
                options.flavor = Some(flavor);
                Ok(())
            }
            "ignore" => {
                let content;
                syn::parenthesized!(content in meta.input);
                let paths = content.parse_terminated(|input| input.parse::<LitStr>(), syn::Token![,])?;
                for path in paths {
                    if !path.value().starts_with('$') {
                        let message = "a JSON path starts with `$`, e.g. `$.user` or `$.messages[*].tool_call_id`";
                        return Err(syn::Error::new(path.span(), message));
                    }
                    options.ignore.push(path);
                }
                Ok(())
            }
            "strategy" => {
                let strategy: LitStr = meta.value()?.parse()?;
                if !["content", "sequence"].contains(&strategy.value().as_str()) {
                    return Err(syn::Error::new(strategy.span(), "`strategy` is \"content\" or \"sequence\""));
                }
                options.strategy = Some(strategy);
                Ok(())
            }
            "crate" => {
                let path: LitStr = meta.value()?.parse()?;
                options.crate_path = Some(path.parse()?);
                Ok(())
            }
            _ => Err(meta.error(format!("unknown option `{key}`: expected one of {OPTIONS}"))),
        }
    });
    syn::parse::Parser::parse2(parser, args)?;
    if options.name.is_some() && options.path.is_some() {
        let span = options.path.as_ref().map_or_else(Span::call_site, |p| p.span());
        return Err(syn::Error::new(span, "set `name` or `path`, not both"));
    }
    Ok(options)
}

/// `#[test]`, `#[tokio::test]`, `#[::tokio::test]` and the like.
fn is_test_attribute(attribute: &Attribute) -> bool {
    attribute.path().segments.last().is_some_and(|s| s.ident == "test")
}

fn is_tokio_test(attribute: &Attribute) -> bool {
    let segments: Vec<String> = attribute.path().segments.iter().map(|s| s.ident.to_string()).collect();
    segments.len() >= 2 && segments[segments.len() - 2] == "tokio" && segments[segments.len() - 1] == "test"
}

fn expand(args: TokenStream2, function: ItemFn) -> syn::Result<TokenStream2> {
    let options = parse_options(args)?;
    let signature = &function.sig;
    if signature.asyncness.is_none() {
        // A test macro above this one (`#[tokio::test]`) has already turned the `async fn` into a
        // `#[::core::prelude::v1::test] fn`. A plain `#[test]` written below is not the problem.
        if function.attrs.iter().any(|a| is_test_attribute(a) && !a.path().is_ident("test")) {
            return Err(syn::Error::new(
                Span::call_site(),
                "#[traceforge::cassette] must be placed above #[tokio::test] (it needs the async fn), or used alone: it runs the test on a tokio runtime itself",
            ));
        }
        return Err(syn::Error::new(signature.fn_token.span(), "#[traceforge::cassette] needs an `async fn`"));
    }
    if !signature.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&signature.generics, "a #[traceforge::cassette] test cannot be generic"));
    }
    let mut inputs = signature.inputs.iter();
    let takes_cassette = match inputs.next() {
        None => false,
        Some(FnArg::Receiver(receiver)) => {
            return Err(syn::Error::new_spanned(receiver, "a test cannot take `self`"));
        }
        Some(FnArg::Typed(argument)) => {
            if !is_cassette_type(&argument.ty) {
                return Err(syn::Error::new_spanned(
                    &argument.ty,
                    "the argument of a #[traceforge::cassette] test must be `traceforge::Cassette`",
                ));
            }
            true
        }
    };
    if let Some(extra) = inputs.next() {
        return Err(syn::Error::new_spanned(
            extra,
            "a #[traceforge::cassette] test takes at most one argument, `traceforge::Cassette`",
        ));
    }

    let tokio_attribute = function.attrs.iter().find(|a| is_tokio_test(a)).cloned();
    if let (Some(_), Some(flavor)) = (&tokio_attribute, &options.flavor) {
        return Err(syn::Error::new(flavor.span(), "with #[tokio::test], set the flavor there, not here"));
    }
    let crate_path = options.crate_path.clone().map_or_else(|| quote!(::traceforge), |p| p.to_token_stream());
    let other_attributes: Vec<&Attribute> = function.attrs.iter().filter(|a| !is_test_attribute(a)).collect();
    let visibility = &function.vis;
    let name = &signature.ident;
    let output = &signature.output;
    let parameters = &signature.inputs;
    let block = &function.block;

    let upstreams = options.upstreams.iter().map(|(n, u)| quote!((#n, #u)));
    let optional = |value: &Option<LitStr>| match value {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    };
    let cassette_name = optional(&options.name);
    let cassette_path = optional(&options.path);
    let mode = match &options.mode {
        Some(mode) => {
            let variant = syn::Ident::new(&capitalise(&mode.value()), mode.span());
            quote!(::core::option::Option::Some(#crate_path::Mode::#variant))
        }
        None => quote!(::core::option::Option::None),
    };
    let ignore_paths = options.ignore.iter();
    let strategy = match &options.strategy {
        Some(strategy) => {
            let variant = syn::Ident::new(&capitalise(&strategy.value()), strategy.span());
            quote!(::core::option::Option::Some(#crate_path::Strategy::#variant))
        }
        None => quote!(::core::option::Option::None),
    };
    let multi_thread = options.flavor.as_ref().is_some_and(|f| f.value() == "multi_thread");
    let call_body = if takes_cassette { quote!(|cassette| #name(cassette)) } else { quote!(|_cassette| #name()) };
    let setup = quote! {
        // The body keeps the test's name, so what names things after the enclosing function
        // (insta's unnamed snapshots, panics, profilers) sees the test, not a helper.
        #[allow(clippy::unused_async)]
        async fn #name(#parameters) #output #block
        let meta = #crate_path::__private::TestMeta {
            manifest_dir: ::core::env!("CARGO_MANIFEST_DIR"),
            module_path: ::core::module_path!(),
            test_name: ::core::stringify!(#name),
            package: ::core::env!("CARGO_PKG_NAME"),
            crate_name: ::core::env!("CARGO_CRATE_NAME"),
            bin_name: ::core::option_env!("CARGO_BIN_NAME"),
            integration_test: ::core::option_env!("CARGO_TARGET_TMPDIR").is_some(),
        };
        let options = #crate_path::__private::TestOptions {
            upstreams: &[#(#upstreams),*],
            name: #cassette_name,
            path: #cassette_path,
            mode: #mode,
            multi_thread: #multi_thread,
            ignore_paths: &[#(#ignore_paths),*],
            strategy: #strategy,
        };
    };
    Ok(match tokio_attribute {
        Some(tokio_attribute) => quote! {
            #tokio_attribute
            #(#other_attributes)*
            #visibility async fn #name() #output {
                #setup
                #crate_path::__private::run_async(meta, options, #call_body).await
            }
        },
        None => quote! {
            #[::core::prelude::v1::test]
            #(#other_attributes)*
            #visibility fn #name() #output {
                #setup
                #crate_path::__private::run_test(meta, options, #call_body)
            }
        },
    })
}

fn is_cassette_type(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => {
            path.qself.is_none()
                && path.path.segments.last().is_some_and(|s| s.ident == "Cassette" && s.arguments.is_empty())
        }
        Type::Paren(inner) => is_cassette_type(&inner.elem),
        Type::Group(inner) => is_cassette_type(&inner.elem),
        _ => false,
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}
