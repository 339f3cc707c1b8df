// /api/docs: Swagger UI renders the app's OpenAPI document (the viewer is served from this origin, no CDN).
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");

  // Swagger UI leaves some form controls without a name a screen reader can say: the server picker (a
  // <select> in an empty <label>) and the inputs of a parameter's row (an enum's <select>, for one). Name
  // them after what they choose, and let the keyboard reach (and so scroll) its code examples, whenever
  // Swagger UI renders.
  function fixUp() {
    root.querySelectorAll("pre:not([tabindex])").forEach(function (pre) { pre.tabIndex = 0; });
    root.querySelectorAll("select:not([aria-label]), input:not([aria-label]), textarea:not([aria-label])")
      .forEach(function (control) {
        var row = control.closest("tr[data-param-name]");
        if (control.id === "servers") {
          control.setAttribute("aria-label", "Server");
        } else if (row) {
          control.setAttribute("aria-label", row.dataset.paramName + " (" + row.dataset.paramIn + ")");
        }
      });
  }
  var pending = false;
  new MutationObserver(function () {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () { pending = false; fixUp(); });
  }).observe(root, { childList: true, subtree: true });

  if (typeof window.SwaggerUIBundle !== "function") {
    root.textContent = "The API viewer could not be loaded. The description is at " + root.dataset.specUrl + ".";
    return;
  }
  window.SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: false, // its permalinks sit inside each operation's toggle button (nested controls)
    validatorUrl: null, // never send the document to a third party's validator
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayOperationId: true,
    showExtensions: true, // x-token-cost: what a call costs in Pipedrive's daily budget
    syntaxHighlight: { activated: true, theme: "idea" }, // the default theme's colours fall under 4.5:1
  });
})();
