// The API docs page (/api/docs): renders the OpenAPI document next to it (openapi.json).
// Plain DOM building with text nodes only (never innerHTML), no inline script or style, no
// third-party code: the page works under Content-Security-Policy: default-src 'self'.
"use strict";

(function () {
  var METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
  var MAX_DEPTH = 8;

  function el(tag, className, children) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function link(href, text) {
    var a = el("a", null, [text]);
    a.setAttribute("href", href);
    return a;
  }

  // `code` spans and **bold**, nothing else: enough for the document's descriptions.
  function inline(text) {
    var span = el("span");
    String(text).split("`").forEach(function (part, i) {
      if (i % 2 === 1) {
        span.appendChild(el("code", null, [part]));
        return;
      }
      part.split("**").forEach(function (piece, j) {
        span.appendChild(j % 2 === 1 ? el("strong", null, [piece]) : document.createTextNode(piece));
      });
    });
    return span;
  }

  function paragraphs(text, className) {
    var box = el("div", className);
    String(text || "").split(/\n\s*\n/).forEach(function (para) {
      if (para.trim()) box.appendChild(el("p", null, [inline(para.replace(/\s*\n\s*/g, " "))]));
    });
    return box;
  }

  function refName(ref) {
    return ref.split("/").pop();
  }

  function resolve(doc, ref) {
    if (ref.indexOf("#/") !== 0) return null;
    return ref.slice(2).split("/").reduce(function (node, key) {
      var name = key.replace(/~1/g, "/").replace(/~0/g, "~");
      return node && typeof node === "object" ? node[name] : undefined;
    }, doc);
  }

  function constraints(schema) {
    var parts = [];
    var types = schema.type === undefined ? [] : [].concat(schema.type);
    if (schema.enum) parts.push("one of " + schema.enum.map(JSON.stringify).join(", "));
    if (schema.const !== undefined) parts.push("= " + JSON.stringify(schema.const));
    if (schema.format) parts.push("format " + schema.format);
    if (schema.contentMediaType) parts.push("content " + schema.contentMediaType);
    if (schema.pattern) parts.push("pattern " + schema.pattern);
    [
      ["minLength", "min length"], ["maxLength", "max length"], ["minimum", "≥"],
      ["maximum", "≤"], ["minItems", "min items"], ["maxItems", "max items"]
    ].forEach(function (pair) {
      if (schema[pair[0]] !== undefined) parts.push(pair[1] + " " + schema[pair[0]]);
    });
    if (schema.required && !schema.properties) parts.push("with " + schema.required.join(", "));
    if (schema.default !== undefined) parts.push("default " + JSON.stringify(schema.default));
    if (schema.examples) parts.push("e.g. " + schema.examples.map(JSON.stringify).join(", "));
    var line = el("span");
    if (types.length) line.appendChild(el("span", "type", [types.join(" | ")]));
    if (parts.length) line.appendChild(el("span", "constraint", [(types.length ? " — " : "") + parts.join("; ")]));
    if (!types.length && !parts.length && isEmpty(schema)) line.appendChild(el("span", "type", ["any"]));
    return line;
  }

  function isEmpty(schema) {
    return ["properties", "items", "anyOf", "oneOf", "allOf", "additionalProperties", "$ref", "required"]
      .every(function (key) { return schema[key] === undefined; });
  }

  function schemaNode(doc, schema, depth, seen) {
    var box = el("div", "schema");
    if (!schema || typeof schema !== "object") {
      box.appendChild(el("span", "type", [schema === false ? "nothing" : "any"]));
      return box;
    }
    if (schema.$ref) {
      var name = refName(schema.$ref);
      var target = resolve(doc, schema.$ref);
      if (!target || seen.indexOf(name) >= 0 || depth >= MAX_DEPTH) {
        box.appendChild(link("#schema-" + name, "→ " + name));
        return box;
      }
      var details = el("details", null, [el("summary", null, [el("span", "prop", [name])])]);
      details.appendChild(schemaNode(doc, target, depth + 1, seen.concat([name])));
      box.appendChild(details);
      return box;
    }
    box.appendChild(constraints(schema));
    if (schema.description && depth > 0) box.appendChild(paragraphs(schema.description, "description"));
    var list = el("ul");
    var required = schema.required || [];
    Object.keys(schema.properties || {}).forEach(function (prop) {
      var item = el("li", null, [el("span", "prop", [prop])]);
      if (required.indexOf(prop) >= 0) item.appendChild(el("span", "required", ["required"]));
      item.appendChild(schemaNode(doc, schema.properties[prop], depth + 1, seen));
      list.appendChild(item);
    });
    if (schema.propertyNames) {
      list.appendChild(el("li", null, ["keys: ", schemaNode(doc, schema.propertyNames, depth + 1, seen)]));
    }
    if (schema.additionalProperties === false) {
      list.appendChild(el("li", "constraint", ["no other properties"]));
    } else if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
      list.appendChild(el("li", null, ["each value: ", schemaNode(doc, schema.additionalProperties, depth + 1, seen)]));
    }
    if (schema.items) {
      list.appendChild(el("li", null, ["items: ", schemaNode(doc, schema.items, depth + 1, seen)]));
    }
    [["allOf", "all of"], ["anyOf", "any of"], ["oneOf", "exactly one of"]].forEach(function (pair) {
      if (!schema[pair[0]]) return;
      var alternatives = el("ul");
      schema[pair[0]].forEach(function (sub) {
        alternatives.appendChild(el("li", null, [schemaNode(doc, sub, depth + 1, seen)]));
      });
      list.appendChild(el("li", null, [pair[1] + ":", alternatives]));
    });
    if (list.childNodes.length) box.appendChild(list);
    return box;
  }

  function security(doc, op) {
    var reqs = op.security !== undefined ? op.security : doc.security || [];
    var names = [];
    reqs.forEach(function (req) { names = names.concat(Object.keys(req)); });
    if (!names.length) return el("span", "auth public", ["public"]);
    return el("span", "auth bearer", ["needs " + names.join(" or ")]);
  }

  function parametersTable(doc, params) {
    var table = el("table", null, [
      el("thead", null, [el("tr", null, [el("th", null, ["name"]), el("th", null, ["in"]),
        el("th", null, ["schema"]), el("th", null, ["description"])])])
    ]);
    var body = el("tbody");
    params.forEach(function (param) {
      if (param.$ref) param = resolve(doc, param.$ref) || param;
      var name = el("td", null, [el("span", "prop", [param.name])]);
      if (param.required) name.appendChild(el("span", "required", ["required"]));
      body.appendChild(el("tr", null, [name, el("td", null, [param.in]),
        el("td", null, [schemaNode(doc, param.schema, 1, [])]),
        el("td", null, [inline(param.description || "")])]));
    });
    table.appendChild(body);
    return table;
  }

  function content(doc, media) {
    var box = el("div");
    Object.keys(media || {}).forEach(function (type) {
      box.appendChild(el("div", "media", [type]));
      box.appendChild(schemaNode(doc, media[type].schema, 0, []));
      if (media[type].example !== undefined) {
        var ex = media[type].example;
        box.appendChild(el("pre", null, [typeof ex === "string" ? ex : JSON.stringify(ex, null, 2)]));
      }
    });
    return box;
  }

  function responses(doc, answers) {
    var table = el("table", null, [
      el("thead", null, [el("tr", null, [el("th", null, ["status"]), el("th", null, ["description"]),
        el("th", null, ["body"])])])
    ]);
    var body = el("tbody");
    Object.keys(answers || {}).sort().forEach(function (code) {
      var answer = answers[code];
      if (answer.$ref) answer = resolve(doc, answer.$ref) || answer;
      var description = el("td", null, [inline(answer.description || "")]);
      Object.keys(answer.headers || {}).forEach(function (header) {
        description.appendChild(el("div", "media", ["header ", el("code", null, [header])]));
      });
      body.appendChild(el("tr", null, [
        el("td", null, [el("span", "status s" + code.charAt(0), [code])]), description,
        el("td", null, [content(doc, answer.content)])]));
    });
    table.appendChild(body);
    return table;
  }

  function operation(doc, path, method, op) {
    var id = "op-" + (op.operationId || method + path.replace(/[^A-Za-z0-9]+/g, "-"));
    var section = el("section", "operation", [
      el("h3", null, [el("span", "method " + method, [method]), el("span", "path", [path]),
        el("span", "summary", [op.summary || ""]), security(doc, op)])
    ]);
    section.id = id;
    if (op.description) section.appendChild(paragraphs(op.description));
    if (op.parameters && op.parameters.length) {
      section.appendChild(el("h4", null, ["Parameters"]));
      section.appendChild(parametersTable(doc, op.parameters));
    }
    if (op.requestBody) {
      var request = op.requestBody.$ref ? resolve(doc, op.requestBody.$ref) : op.requestBody;
      section.appendChild(el("h4", null, ["Request body" + (request.required ? " (required)" : "")]));
      if (request.description) section.appendChild(paragraphs(request.description));
      section.appendChild(content(doc, request.content));
    }
    section.appendChild(el("h4", null, ["Responses"]));
    section.appendChild(responses(doc, op.responses));
    return { id: id, node: section };
  }

  function render(doc) {
    document.title = (doc.info && doc.info.title) || document.title;
    document.getElementById("title").textContent = document.title;
    document.getElementById("version").textContent =
      "version " + ((doc.info && doc.info.version) || "?") + " · OpenAPI " + doc.openapi + " · ";
    document.getElementById("intro").appendChild(paragraphs(doc.info && doc.info.description));

    var byTag = {};
    var tagOrder = (doc.tags || []).map(function (tag) { return tag.name; });
    Object.keys(doc.paths || {}).forEach(function (path) {
      METHODS.forEach(function (method) {
        var op = doc.paths[path][method];
        if (!op) return;
        var tag = (op.tags && op.tags[0]) || "other";
        if (tagOrder.indexOf(tag) < 0) tagOrder.push(tag);
        (byTag[tag] = byTag[tag] || []).push(operation(doc, path, method, op));
        byTag[tag][byTag[tag].length - 1].label = method.toUpperCase() + " " + path;
      });
    });

    var toc = document.getElementById("toc");
    var ops = document.getElementById("operations");
    tagOrder.forEach(function (tag) {
      if (!byTag[tag]) return;
      var info = (doc.tags || []).filter(function (t) { return t.name === tag; })[0];
      ops.appendChild(el("h2", "tag", [tag]));
      if (info && info.description) ops.appendChild(paragraphs(info.description, "description"));
      toc.appendChild(el("h2", null, [tag]));
      var list = el("ul");
      byTag[tag].forEach(function (entry) {
        ops.appendChild(entry.node);
        list.appendChild(el("li", null, [link("#" + entry.id, entry.label)]));
      });
      toc.appendChild(list);
    });

    var components = (doc.components && doc.components.schemas) || {};
    var names = Object.keys(components).sort();
    if (names.length) {
      var schemas = document.getElementById("schemas");
      schemas.appendChild(el("h2", "tag", ["Schemas"]));
      toc.appendChild(el("h2", null, ["schemas"]));
      var list = el("ul");
      names.forEach(function (name) {
        var box = el("section", "operation", [el("h3", null, [el("span", "prop", [name])])]);
        box.id = "schema-" + name;
        if (components[name].description) box.appendChild(paragraphs(components[name].description));
        box.appendChild(schemaNode(doc, components[name], 0, [name]));
        schemas.appendChild(box);
        list.appendChild(el("li", null, [link("#schema-" + name, name)]));
      });
      toc.appendChild(list);
    }
    var schemes = (doc.components && doc.components.securitySchemes) || {};
    Object.keys(schemes).forEach(function (name) {
      var scheme = schemes[name];
      var intro = document.getElementById("intro");
      intro.appendChild(el("h4", null, ["Security scheme ", el("code", null, [name]), ": " +
        scheme.type + (scheme.scheme ? " " + scheme.scheme : "")]));
      if (scheme.description) intro.appendChild(paragraphs(scheme.description));
    });
  }

  function start() {
    var status = document.getElementById("status");
    fetch("openapi.json", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (doc) {
        render(doc);
        status.remove();
        if (location.hash) {
          var target = document.getElementById(location.hash.slice(1));
          if (target) target.scrollIntoView();
        }
      })
      .catch(function (error) {
        status.className = "error";
        status.textContent = "Could not load openapi.json: " + error.message;
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
