//! The Attestix tools over the Model Context Protocol, as a client of an
//! Attestix server: the reference's 47 tools ([`tools`]), each a row of the
//! table ([`table`]) that one dispatcher ([`dispatch`]) turns into its REST call.

pub mod dispatch;
pub mod table;
pub mod tools;

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::client::ApiClient;

/// What the server tells the host about its tools.
const INSTRUCTIONS: &str = "Attestix: identities (UAITs), Verifiable Credentials and \
Presentations, delegations, DIDs and agent cards for AI agents, stored by an Attestix server. \
Tools that write take an optional idempotency_key: to retry a call whose answer was lost, call \
again with the same key and arguments and the first result comes back, instead of a second \
resource.";

/// The MCP server: the tool list, and the client that carries out the calls.
#[derive(Debug, Clone)]
pub struct AttestixMcp {
    client: ApiClient,
    tools: Arc<Vec<rmcp::model::Tool>>,
}

impl AttestixMcp {
    /// A server whose tools call the Attestix server `client` talks to.
    pub fn new(client: ApiClient) -> Self {
        Self {
            client,
            tools: Arc::new(tools::all().map(describe).collect()),
        }
    }
}

/// A table row as the MCP tool list shows it.
fn describe(tool: &table::Tool) -> rmcp::model::Tool {
    let mut described = rmcp::model::Tool::new(tool.name, tool.description, tool.input_schema());
    described.output_schema = Some(Arc::new(tool.output_schema()));
    described.annotations = Some(ToolAnnotations::new().read_only(!tool.method.is_write()));
    described
}

impl ServerHandler for AttestixMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("attestix", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = tools::find(&request.name) else {
            // An unknown tool is a protocol error (the request cannot be routed).
            return Err(ErrorData::invalid_params(
                format!("there is no tool named `{}`", request.name),
                None,
            ));
        };
        let args = request.arguments.unwrap_or_default();
        let outcome = dispatch::call(&self.client, tool, &args).await;
        let content = vec![ContentBlock::text(outcome.text.clone())];
        let result = if outcome.is_error {
            CallToolResult::error(content)
        } else {
            // As the reference: the text again as `result`, per the output schema.
            let mut result = CallToolResult::success(content);
            result.structured_content = Some(serde_json::json!({ "result": outcome.text }));
            result
        };
        Ok(result.into())
    }
}
