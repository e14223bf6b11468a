//! `#[derive(Model)]`: derives a tfplug schema block, with its validators, defaults and checks,
//! from a typed model struct, so each attribute is declared once, on the field it fills.
//!
//! The attribute grammar is documented on `tfplug::model::Model`. Mistakes in it are compile
//! errors at the offending token, never a schema that differs from the model.
use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{quote, quote_spanned};
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Expr, Fields, GenericArgument, Ident, LitStr, PathArguments, Token};

#[proc_macro_derive(Model, attributes(tf))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// How a field appears in the schema.
#[derive(Default)]
struct FieldSpec {
    required: bool,
    optional: bool,
    computed: bool,
    replace: bool,
    live: bool,
    sensitive: bool,
    write_only: bool,
    deprecated: bool,
    block: bool,
    flatten: bool,
    skip: bool,
    default: Option<Expr>,
    min_items: Option<Expr>,
    max_items: Option<Expr>,
    summary: Option<LitStr>,
    validators: Vec<Tokens>,
    /// Closures never called, whose bodies only compile when a validator fits the field's type.
    type_checks: Vec<Tokens>,
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "Model cannot be derived for generic structs",
        ));
    }
    let name = &input.ident;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.span(),
            "Model can only be derived for structs",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            input.span(),
            "Model needs a struct with named fields",
        ));
    };
    let description = doc_text(&input.attrs);
    let mut steps = Vec::new();
    for field in &fields.named {
        if let Some(step) = field_step(field)? {
            steps.push(step);
        }
    }
    // Checks name the model's own attributes and blocks, as the schema spells them.
    let mut own = Vec::new();
    for field in &fields.named {
        let spec = field_spec(field)?;
        if !spec.skip
            && !spec.flatten
            && let Some(ident) = &field.ident
        {
            own.push(ident.to_string().trim_start_matches("r#").to_owned());
        }
    }
    let checks = struct_checks(name, &input.attrs, &own)?;
    Ok(quote! {
        impl ::tfplug::model::Model for #name {
            fn block() -> ::tfplug::Block {
                let mut block = ::tfplug::Block::new(::std::vec::Vec::new(), ::std::vec::Vec::new())
                    .description(#description);
                #(#steps)*
                #(block.checks.push(#checks);)*
                block
            }
        }

        impl ::tfplug::model::AttributeType for #name {
            fn attribute_type() -> ::tfplug::Type {
                <Self as ::tfplug::model::Model>::block().implied_type()
            }
        }
    })
}

/// The statements that add one field to `block`, or `None` for a skipped field.
fn field_step(field: &syn::Field) -> syn::Result<Option<Tokens>> {
    let ident = field.ident.as_ref().expect("named field");
    let attr_name = ident.to_string().trim_start_matches("r#").to_owned();
    let spec = field_spec(field)?;
    let span = field.span();
    if spec.skip {
        if !serde_has(field, "skip") {
            return Err(syn::Error::new(
                span,
                "a field left out of the schema is left out of serde too: add #[serde(skip)]",
            ));
        }
        return Ok(None);
    }
    let ty = &field.ty;
    let description = doc_text(&field.attrs);
    if spec.flatten {
        let other = spec.required
            || spec.optional
            || spec.computed
            || spec.replace
            || spec.live
            || spec.sensitive
            || spec.write_only
            || spec.deprecated
            || spec.block
            || spec.default.is_some()
            || spec.summary.is_some()
            || !spec.validators.is_empty();
        if other {
            return Err(syn::Error::new(
                span,
                "`flatten` takes no other key: the flattened model's fields declare themselves",
            ));
        }
        if !serde_has(field, "flatten") {
            return Err(syn::Error::new(
                span,
                "a flattened model is flattened for serde too: add #[serde(flatten)]",
            ));
        }
        return Ok(Some(quote_spanned! {span=>
            {
                let inner = <#ty as ::tfplug::model::Model>::block();
                block.attributes.extend(inner.attributes);
                block.blocks.extend(inner.blocks);
                block.checks.extend(inner.checks);
            }
        }));
    }
    if spec.block {
        return block_step(field, &attr_name, &spec, &description).map(Some);
    }
    let mode = match (spec.required, spec.optional, spec.computed, &spec.default) {
        (true, false, false, None) => quote!(required),
        (false, true, false, None) => quote!(optional),
        (false, false, true, None) => quote!(computed),
        (false, true, true, None) | (false, _, _, Some(_)) => quote!(optional_computed),
        _ => {
            return Err(syn::Error::new(
                span,
                "say how the attribute is set: `required`, `optional`, `computed`, \
                 `optional, computed` or `default = ...`",
            ));
        }
    };
    let mut modifiers = Vec::new();
    for (on, call) in [
        (spec.replace, quote!(.force_new())),
        (spec.live, quote!(.live())),
        (spec.sensitive, quote!(.sensitive())),
        (spec.write_only, quote!(.write_only())),
        (spec.deprecated, quote!(.deprecated())),
    ] {
        if on {
            modifiers.push(call);
        }
    }
    if let Some(default) = &spec.default {
        let value_ty = generic_arg(ty, "Option").unwrap_or(ty);
        modifiers.push(quote!(.default(::tfplug::model::default_value::<#value_ty>(#default))));
    }
    let summary = spec.summary.as_ref().map(|s| quote!(.summary(#s)));
    let type_checks = &spec.type_checks;
    let validators = spec
        .validators
        .iter()
        .map(|v| quote!(.validator(#v #summary)));
    Ok(Some(quote_spanned! {span=>
        #(#type_checks)*
        block.attributes.push(
            ::tfplug::Attribute::#mode(
                #attr_name,
                <#ty as ::tfplug::model::AttributeType>::attribute_type(),
            )
            .description(#description)
            #(#modifiers)*
            #(#validators)*
        );
    }))
}

fn block_step(
    field: &syn::Field,
    name: &str,
    spec: &FieldSpec,
    description: &str,
) -> syn::Result<Tokens> {
    let span = field.span();
    if spec.optional || spec.computed || spec.default.is_some() || !spec.validators.is_empty() {
        return Err(syn::Error::new(
            span,
            "a block is optional unless `required`; it takes no default or validators (declare \
             checks on the block's own model)",
        ));
    }
    if spec.sensitive || spec.write_only || spec.deprecated || spec.live || spec.summary.is_some() {
        return Err(syn::Error::new(
            span,
            "a block cannot be `sensitive`, `write_only`, `deprecated`, `live` or have a \
             `summary`; declare them on the block's attributes",
        ));
    }
    let (nesting, inner) = if let Some(inner) = generic_arg(&field.ty, "Vec") {
        (quote!(List), inner)
    } else {
        let inner = generic_arg(&field.ty, "Option").unwrap_or(&field.ty);
        match generic_arg(inner, "Vec") {
            Some(element) => (quote!(List), element),
            None => (quote!(Single), inner),
        }
    };
    let single = nesting.to_string() == "Single";
    let items = if spec.required && single {
        quote!(b = b.items(1, 1);)
    } else if spec.required {
        return Err(syn::Error::new(
            span,
            "a list block says how many items it needs with `min_items = N`",
        ));
    } else {
        let min = spec.min_items.clone().map_or(quote!(0), |e| quote!(#e));
        let max = spec.max_items.clone().map_or(quote!(0), |e| quote!(#e));
        quote!(b = b.items(#min, #max);)
    };
    let replace = spec.replace.then(|| quote!(b = b.force_new();));
    let description =
        (!description.is_empty()).then(|| quote!(b.block.description = #description.to_owned();));
    Ok(quote_spanned! {span=>
        block.blocks.push({
            let mut b = ::tfplug::NestedBlock::new(
                #name,
                ::tfplug::Nesting::#nesting,
                <#inner as ::tfplug::model::Model>::block(),
            );
            #items
            #replace
            #description
            b
        });
    })
}

fn field_spec(field: &syn::Field) -> syn::Result<FieldSpec> {
    let mut spec = FieldSpec::default();
    // Validators decode the known value into the field's type without its `Option`.
    let value_ty = generic_arg(&field.ty, "Option")
        .unwrap_or(&field.ty)
        .clone();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("tf")) {
        attr.parse_nested_meta(|meta| {
            let flag = |on: &mut bool| {
                *on = true;
                Ok(())
            };
            let path = &meta.path;
            if path.is_ident("required") {
                flag(&mut spec.required)
            } else if path.is_ident("optional") {
                flag(&mut spec.optional)
            } else if path.is_ident("computed") {
                flag(&mut spec.computed)
            } else if path.is_ident("replace") {
                flag(&mut spec.replace)
            } else if path.is_ident("live") {
                flag(&mut spec.live)
            } else if path.is_ident("sensitive") {
                flag(&mut spec.sensitive)
            } else if path.is_ident("write_only") {
                flag(&mut spec.write_only)
            } else if path.is_ident("deprecated") {
                flag(&mut spec.deprecated)
            } else if path.is_ident("block") {
                flag(&mut spec.block)
            } else if path.is_ident("flatten") {
                flag(&mut spec.flatten)
            } else if path.is_ident("skip") {
                flag(&mut spec.skip)
            } else if path.is_ident("default") {
                spec.default = Some(meta.value()?.parse()?);
                Ok(())
            } else if path.is_ident("min_items") {
                spec.min_items = Some(meta.value()?.parse()?);
                Ok(())
            } else if path.is_ident("max_items") {
                spec.max_items = Some(meta.value()?.parse()?);
                Ok(())
            } else if path.is_ident("summary") {
                spec.summary = Some(meta.value()?.parse()?);
                Ok(())
            } else if path.is_ident("range") {
                let bounds = parenthesized_list::<Expr>(meta.input)?;
                let [min, max] = bounds.as_slice() else {
                    return Err(meta.error("write `range(min, max)`"));
                };
                spec.validators
                    .push(quote!(::tfplug::Validator::range(#min, #max)));
                spec.type_checks.push(quote_spanned! {path.span()=>
                    let _ = |v: &#value_ty| *v as i64;
                });
                Ok(())
            } else if path.is_ident("one_of") || path.is_ident("one_of_ignoring_case") {
                let constructor = path.get_ident().cloned();
                let values = parenthesized_list::<LitStr>(meta.input)?;
                spec.validators
                    .push(quote!(::tfplug::Validator::#constructor(&[#(#values),*])));
                spec.type_checks.push(quote_spanned! {path.span()=>
                    let _ = |v: &#value_ty| { let _: &str = v.as_str(); };
                });
                Ok(())
            } else if path.is_ident("validate") {
                let function: syn::Path = meta.value()?.parse()?;
                spec.validators.push(quote_spanned! {function.span()=>
                    ::tfplug::Validator::custom({
                        fn __tf_check(
                            value: &::tfplug::Value,
                        ) -> ::core::result::Result<(), ::std::string::String> {
                            let value: #value_ty = ::tfplug::model::decode_attribute(value)
                                .map_err(|e| ::std::string::ToString::to_string(&e))?;
                            #function(&value)
                                .map(|_| ())
                                .map_err(|e| ::std::string::ToString::to_string(&e))
                        }
                        __tf_check
                    })
                });
                Ok(())
            } else {
                Err(meta.error("unknown `tf` key"))
            }
        })?;
    }
    let declared = spec.skip
        || spec.flatten
        || spec.block
        || spec.required
        || spec.optional
        || spec.computed
        || spec.default.is_some();
    if !declared {
        return Err(syn::Error::new(
            field.span(),
            "every field says how it is set: #[tf(required)], #[tf(optional)], #[tf(computed)], \
             #[tf(default = ...)], #[tf(block)], #[tf(flatten)] or #[tf(skip)]",
        ));
    }
    Ok(spec)
}

/// Checks declared on the struct: `exactly_one_of(a, b)`, `check = f`, `check(f, known(a))`,
/// each optionally followed by `summary = "..."`.
fn struct_checks(
    name: &Ident,
    attrs: &[syn::Attribute],
    own: &[String],
) -> syn::Result<Vec<Tokens>> {
    let named = |idents: Vec<Ident>| -> syn::Result<Vec<String>> {
        idents
            .into_iter()
            .map(|i| {
                let text = i.to_string();
                if own.contains(&text) {
                    Ok(text)
                } else {
                    Err(syn::Error::new(
                        i.span(),
                        format!(
                            "`{text}` is not an attribute or block of this model; checks name \
                             the model's own fields"
                        ),
                    ))
                }
            })
            .collect()
    };
    let mut checks: Vec<Tokens> = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("tf")) {
        attr.parse_nested_meta(|meta| {
            let path = &meta.path;
            if path.is_ident("exactly_one_of") {
                let names = named(parenthesized_list::<Ident>(meta.input)?)?;
                checks.push(quote!(::tfplug::BlockCheck::exactly_one_of(&[#(#names),*])));
                Ok(())
            } else if path.is_ident("check") {
                let (function, known) = if meta.input.peek(Token![=]) {
                    (meta.value()?.parse::<syn::Path>()?, Vec::new())
                } else {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let function: syn::Path = content.parse()?;
                    let mut known = Vec::new();
                    if content.parse::<Option<Token![,]>>()?.is_some() {
                        let key: Ident = content.parse()?;
                        if key != "known" {
                            return Err(syn::Error::new(key.span(), "write `known(field, ...)`"));
                        }
                        known = named(parenthesized_list::<Ident>(&content)?)?;
                    }
                    (function, known)
                };
                checks.push(quote_spanned! {function.span()=>
                    ::tfplug::BlockCheck::custom(&[#(#known),*], {
                        fn __tf_check(value: &::tfplug::Value) -> ::tfplug::Diagnostics {
                            match ::tfplug::model::decode_partial::<#name>(value) {
                                ::core::option::Option::Some(model) => #function(&model),
                                ::core::option::Option::None => ::tfplug::Diagnostics::new(),
                            }
                        }
                        __tf_check
                    })
                });
                Ok(())
            } else if path.is_ident("summary") {
                let summary: LitStr = meta.value()?.parse()?;
                let Some(last) = checks.pop() else {
                    return Err(meta.error("`summary` follows the check it names"));
                };
                checks.push(quote!(#last.summary(#summary)));
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `tf` key on a struct; use `exactly_one_of(...)`, `check = ...` or \
                     `check(..., known(...))`",
                ))
            }
        })?;
    }
    Ok(checks)
}

fn parenthesized_list<T: syn::parse::Parse>(input: ParseStream<'_>) -> syn::Result<Vec<T>> {
    let content;
    syn::parenthesized!(content in input);
    Ok(Punctuated::<T, Token![,]>::parse_terminated(&content)?
        .into_iter()
        .collect())
}

/// Whether the field has `#[serde(...)]` naming `key`.
fn serde_has(field: &syn::Field, key: &str) -> bool {
    field.attrs.iter().any(|a| {
        a.path().is_ident("serde")
            && a.meta.require_list().is_ok_and(|l| {
                l.tokens
                    .clone()
                    .into_iter()
                    .any(|t| matches!(t, proc_macro2::TokenTree::Ident(i) if i == key))
            })
    })
}

/// `T` when `ty` is `Wrapper<T>` (by its last path segment).
fn generic_arg<'a>(ty: &'a syn::Type, wrapper: &str) -> Option<&'a syn::Type> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(inner) => Some(inner),
        _ => None,
    }
}

/// The doc comment as Markdown: lines joined with spaces, blank lines kept as paragraph breaks.
fn doc_text(attrs: &[syn::Attribute]) -> String {
    let mut paragraphs: Vec<String> = vec![String::new()];
    for attr in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        let syn::Meta::NameValue(nv) = &attr.meta else {
            continue;
        };
        let Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(text),
            ..
        }) = &nv.value
        else {
            continue;
        };
        let text = text.value();
        let line = text.trim();
        let current = paragraphs.last_mut().expect("one paragraph");
        if line.is_empty() {
            if !current.is_empty() {
                paragraphs.push(String::new());
            }
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(line);
        }
    }
    paragraphs.retain(|p| !p.is_empty());
    paragraphs.join("\n\n")
}
