// A minimal MCP Apps host for the browser test, built on the official host side (AppBridge from
// @modelcontextprotocol/ext-apps). It renders a ui:// document in a sandboxed iframe, as hosts do, and
// hands every tool call the view makes to `window.mcpCallTool`, which the test binds to a real MCP client
// session; progress the server reports on that call is passed back to the view as the protocol's
// notifications/progress.
import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";

let bridge = null;
let frame = null;
const progressTokens = new Map(); // call id (the test's) -> [progress token, notify]
let nextCall = 0;

window.hostProgress = (callId, progress) => {
  const entry = progressTokens.get(callId);
  if (!entry) return;
  const [progressToken, notify] = entry;
  notify({ method: "notifications/progress", params: { progressToken, ...progress } });
};

window.hostStart = async ({ html, toolInput, toolResult, theme, width }) => {
  frame = document.createElement("iframe");
  frame.setAttribute("sandbox", "allow-scripts"); // no same-origin: the view cannot reach this page
  frame.title = "Meshes incident view";
  frame.style.height = "200px";
  document.body.dataset.theme = theme;
  document.getElementById("stage").append(frame);
  bridge = new AppBridge(
    null,
    { name: "meshes-test-host", version: "1" },
    { serverTools: {}, logging: {} },
    { hostContext: { theme, displayMode: "inline", containerDimensions: { maxWidth: width }, platform: "web" } },
  );
  bridge.oncalltool = async (params, extra) => {
    const callId = ++nextCall;
    const token = extra.mcpReq._meta?.progressToken;
    if (token !== undefined) progressTokens.set(callId, [token, (n) => extra.mcpReq.notify(n)]);
    try {
      return await window.mcpCallTool(callId, params.name, params.arguments ?? {});
    } finally {
      progressTokens.delete(callId);
    }
  };
  bridge.onsizechange = ({ height }) => {
    if (typeof height === "number") frame.style.height = `${height}px`;
  };
  const initialized = new Promise((resolve) => {
    bridge.oninitialized = resolve;
  });
  await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
  frame.srcdoc = html;
  await initialized;
  await bridge.sendToolInput({ arguments: toolInput });
  await bridge.sendToolResult(toolResult);
};

window.hostTheme = async (theme) => {
  document.body.dataset.theme = theme;
  await bridge.setHostContext({ ...bridge.getHostContext?.(), theme });
};
