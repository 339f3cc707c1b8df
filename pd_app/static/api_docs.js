// Renders the operations of /api/openapi.json as a plain list (no third-party code, no CDN).
(function () {
  "use strict";
  var root = document.getElementById("operations");
  fetch(root.dataset.spec, { credentials: "omit" })
    .then(function (r) { return r.json(); })
    .then(function (spec) {
      root.textContent = "";
      Object.keys(spec.paths).sort().forEach(function (path) {
        Object.keys(spec.paths[path]).forEach(function (method) {
          if (["get", "post", "put", "patch", "delete"].indexOf(method) < 0) { return; }
          var op = spec.paths[path][method];
          var row = document.createElement("div");
          row.className = "op";
          var m = document.createElement("span");
          m.className = "method";
          m.textContent = method.toUpperCase();
          var p = document.createElement("code");
          p.textContent = path;
          var s = document.createElement("div");
          s.className = "summary";
          s.textContent = (op.operationId ? op.operationId + ": " : "") + (op.summary || "");
          row.appendChild(m);
          row.appendChild(p);
          row.appendChild(s);
          root.appendChild(row);
        });
      });
    })
    .catch(function () { root.textContent = "Could not load the API description."; });
})();
