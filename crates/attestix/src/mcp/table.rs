//! The shape of one MCP tool: its interface (name, description, arguments, as the
//! reference declares them) and the REST call it makes, as plain data.
//!
//! Every tool is a row of this table; [`super::dispatch`] turns a call of any row
//! into its HTTP request, so a tool is added by describing it, not by coding it.

use serde_json::{json, Map, Value};

/// The JSON type of an argument (the reference's Python annotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `str`: a JSON string.
    Str,
    /// `int`: a JSON integer.
    Int,
    /// `bool`: a JSON boolean.
    Bool,
    /// `float`: a JSON number.
    Float,
}

impl Kind {
    /// The JSON Schema `type`.
    pub fn schema_type(self) -> &'static str {
        match self {
            Self::Str => "string",
            Self::Int => "integer",
            Self::Bool => "boolean",
            Self::Float => "number",
        }
    }
}

/// An argument's default value; [`ArgDefault::Required`] when it has none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArgDefault {
    /// The caller must give it.
    Required,
    /// A string default.
    Str(&'static str),
    /// An integer default.
    Int(i64),
    /// A boolean default.
    Bool(bool),
    /// A number default.
    Float(f64),
}

impl ArgDefault {
    /// The default as JSON, or `None` for a required argument.
    pub fn value(self) -> Option<Value> {
        match self {
            Self::Required => None,
            Self::Str(text) => Some(json!(text)),
            Self::Int(number) => Some(json!(number)),
            Self::Bool(flag) => Some(json!(flag)),
            Self::Float(number) => Some(json!(number)),
        }
    }
}

/// Where an argument goes in the HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A field of the JSON body, by this name.
    Body(&'static str),
    /// A query parameter, by this name.
    Query(&'static str),
    /// A `{name}` segment of the path template.
    Path,
}

/// How an argument's value becomes the value sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Sent as given.
    Plain,
    /// Left out when empty (`""` or `0`): the reference passes `None` then.
    OmitEmpty,
    /// A comma-separated string sent as a list of its trimmed, non-empty items.
    CommaList,
    /// A string holding JSON, sent as that JSON; left out when empty.
    Json,
}

/// One argument of a tool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arg {
    /// The argument's name (the reference's parameter name).
    pub name: &'static str,
    /// Its JSON type.
    pub kind: Kind,
    /// Its default, or required.
    pub default: ArgDefault,
    /// Where it goes in the request.
    pub place: Place,
    /// How its value is sent.
    pub shape: Shape,
}

impl Arg {
    const fn new(name: &'static str, kind: Kind, default: ArgDefault) -> Self {
        Self {
            name,
            kind,
            default,
            place: Place::Body(name),
            shape: Shape::Plain,
        }
    }

    /// A required string, sent as the body field of the same name.
    pub const fn string(name: &'static str) -> Self {
        Self::new(name, Kind::Str, ArgDefault::Required)
    }

    /// An optional string with this default.
    pub const fn string_or(name: &'static str, default: &'static str) -> Self {
        Self::new(name, Kind::Str, ArgDefault::Str(default))
    }

    /// An optional integer with this default.
    pub const fn int_or(name: &'static str, default: i64) -> Self {
        Self::new(name, Kind::Int, ArgDefault::Int(default))
    }

    /// An optional boolean with this default.
    pub const fn bool_or(name: &'static str, default: bool) -> Self {
        Self::new(name, Kind::Bool, ArgDefault::Bool(default))
    }

    /// An optional number with this default.
    pub const fn float_or(name: &'static str, default: f64) -> Self {
        Self::new(name, Kind::Float, ArgDefault::Float(default))
    }

    /// Sent as the body field `field` (the REST name differs from the tool's).
    pub const fn field(mut self, field: &'static str) -> Self {
        self.place = Place::Body(field);
        self
    }

    /// Sent as the query parameter of the same name.
    pub const fn query(mut self) -> Self {
        self.place = Place::Query(self.name);
        self
    }

    /// Fills the `{name}` segment of the path.
    pub const fn path(mut self) -> Self {
        self.place = Place::Path;
        self
    }

    /// Left out of the request when empty.
    pub const fn omit_empty(mut self) -> Self {
        self.shape = Shape::OmitEmpty;
        self
    }

    /// A comma-separated list, sent as a JSON list.
    pub const fn comma_list(mut self) -> Self {
        self.shape = Shape::CommaList;
        self
    }

    /// A JSON text, sent as the JSON it holds.
    pub const fn json(mut self) -> Self {
        self.shape = Shape::Json;
        self
    }

    /// The argument's JSON Schema, as the reference's (pydantic's) schema writes it.
    pub fn schema(&self) -> Value {
        let mut property = Map::new();
        if let Some(default) = self.default.value() {
            property.insert("default".into(), default);
        }
        property.insert("title".into(), json!(title_case(self.name)));
        property.insert("type".into(), json!(self.kind.schema_type()));
        Value::Object(property)
    }
}

/// The HTTP method of a tool's REST call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Reads.
    Get,
    /// Creates, or computes (verify, parse).
    Post,
    /// Updates.
    Patch,
    /// Revokes or erases.
    Delete,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// Whether a call sends an Idempotency-Key (and so takes `idempotency_key`):
    /// every method but GET, as the CLI does.
    pub fn is_write(self) -> bool {
        self != Self::Get
    }
}

/// Adds fields the REST call needs that no argument gives directly (computed from
/// the arguments), or refuses the call; the error is the tool error's text.
pub type Prepare =
    fn(args: &Map<String, Value>, body: &mut Map<String, Value>) -> Result<(), String>;

/// One MCP tool.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The tool's name.
    pub name: &'static str,
    /// Its description (the reference's docstring).
    pub description: &'static str,
    /// Its arguments, in the reference's order.
    pub args: &'static [Arg],
    /// The REST call's method.
    pub method: Method,
    /// The REST call's path template: `{arg}` segments are filled from
    /// arguments; `{a|b}` takes the first of `a`, `b` that is not empty.
    pub path: &'static str,
    /// Extra work on the body, for the few tools that need it.
    pub prepare: Option<Prepare>,
}

/// The optional argument every writing tool takes: the Idempotency-Key to send.
pub const IDEMPOTENCY_KEY_ARG: &str = "idempotency_key";

/// What `idempotency_key` says in every writing tool's schema.
const IDEMPOTENCY_KEY_DESCRIPTION: &str = "Idempotency-Key for this write (1 to 255 visible \
ASCII characters). Leave it out for a new operation; to retry a call whose answer was lost, \
call again with the same key and the same arguments: the server returns the first result \
instead of doing it twice. A failed call's error names the key it used.";

impl Tool {
    /// A tool with no extra work on its body.
    pub const fn new(
        name: &'static str,
        description: &'static str,
        args: &'static [Arg],
        method: Method,
        path: &'static str,
    ) -> Self {
        Self {
            name,
            description,
            args,
            method,
            path,
            prepare: None,
        }
    }

    /// The same tool with `prepare` run on its body.
    pub const fn prepared(mut self, prepare: Prepare) -> Self {
        self.prepare = Some(prepare);
        self
    }

    /// The endpoint, as `METHOD /path/{template}`.
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method.as_str(), self.path)
    }

    /// The input JSON Schema: the reference's, plus `idempotency_key` on writes.
    pub fn input_schema(&self) -> Map<String, Value> {
        let mut properties = Map::new();
        for arg in self.args {
            properties.insert(arg.name.into(), arg.schema());
        }
        if self.method.is_write() {
            properties.insert(
                IDEMPOTENCY_KEY_ARG.into(),
                json!({
                    "title": title_case(IDEMPOTENCY_KEY_ARG),
                    "type": "string",
                    "description": IDEMPOTENCY_KEY_DESCRIPTION,
                }),
            );
        }
        let required: Vec<Value> = self
            .args
            .iter()
            .filter(|arg| arg.default == ArgDefault::Required)
            .map(|arg| json!(arg.name))
            .collect();
        let mut schema = Map::new();
        schema.insert("properties".into(), Value::Object(properties));
        if !required.is_empty() {
            schema.insert("required".into(), Value::Array(required));
        }
        schema.insert("title".into(), json!(format!("{}Arguments", self.name)));
        schema.insert("type".into(), json!("object"));
        schema
    }
}

impl Tool {
    /// The output JSON Schema, the reference's: the document as JSON text in `result`.
    pub fn output_schema(&self) -> Map<String, Value> {
        let mut schema = Map::new();
        schema.insert(
            "properties".into(),
            json!({"result": {"title": "Result", "type": "string"}}),
        );
        schema.insert("required".into(), json!(["result"]));
        schema.insert("title".into(), json!(format!("{}Output", self.name)));
        schema.insert("type".into(), json!("object"));
        schema
    }
}

/// `display_name` → `Display Name`, as pydantic titles a field.
fn title_case(name: &str) -> String {
    name.split('_')
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_pydantics() {
        assert_eq!(title_case("display_name"), "Display Name");
        assert_eq!(title_case("annex_iii_category"), "Annex Iii Category");
        assert_eq!(title_case("did"), "Did");
    }

    #[test]
    fn writes_take_an_idempotency_key_and_reads_do_not() {
        const ARGS: &[Arg] = &[Arg::string("agent_id").path()];
        let read = Tool::new("r", "", ARGS, Method::Get, "/v1/x/{agent_id}");
        let write = Tool::new("w", "", ARGS, Method::Delete, "/v1/x/{agent_id}");
        assert!(read.input_schema()["properties"]
            .get(IDEMPOTENCY_KEY_ARG)
            .is_none());
        let schema = write.input_schema();
        assert_eq!(
            schema["properties"][IDEMPOTENCY_KEY_ARG]["type"],
            json!("string")
        );
        assert_eq!(schema["required"], json!(["agent_id"]));
    }
}
