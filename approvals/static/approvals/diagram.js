/* Baton diagram viewer: draws #diagram with the vendored bpmn-js NavigatedViewer and marks
   done / active / failed elements and the task page's own step (current). Progressive enhancement: the page lists the same steps in
   text (#diagram-legend), so nothing depends on this script. The bpmn.io watermark that
   bpmn-js draws stays visible (its licence requires it). */
(function () {
  "use strict";

  var MARKERS = { done: "baton-done", active: "baton-active", failed: "baton-failed", current: "baton-current" };
  var STEP = 60; // pixels per arrow key press
  var ZOOM = 1.25;

  function ids(value) {
    return (value || "").split(",").map(function (s) { return s.trim(); }).filter(Boolean);
  }

  function message(container, text) {
    container.textContent = "";
    var p = document.createElement("p");
    p.className = "diagram-message diagram-error";
    p.setAttribute("role", "alert");
    p.textContent = text;
    container.appendChild(p);
    container.setAttribute("data-diagram-state", "error");
  }

  function fit(canvas) {
    canvas.zoom("fit-viewport", "auto");
  }

  function zoomBy(canvas, factor) {
    var current = canvas.zoom();
    canvas.zoom(Math.min(4, Math.max(0.2, current * factor)));
  }

  function mark(viewer, container) {
    var canvas = viewer.get("canvas");
    var registry = viewer.get("elementRegistry");
    Object.keys(MARKERS).forEach(function (state) {
      ids(container.getAttribute("data-" + state)).forEach(function (id) {
        if (registry.get(id)) {
          canvas.addMarker(id, MARKERS[state]);
        }
      });
    });
  }

  function bindKeys(container, canvas) {
    container.addEventListener("keydown", function (event) {
      if (event.target !== container || event.altKey || event.ctrlKey || event.metaKey) {
        return;
      }
      var moves = { ArrowLeft: [STEP, 0], ArrowRight: [-STEP, 0], ArrowUp: [0, STEP], ArrowDown: [0, -STEP] };
      if (moves[event.key]) {
        canvas.scroll({ dx: moves[event.key][0], dy: moves[event.key][1] });
      } else if (event.key === "+" || event.key === "=") {
        zoomBy(canvas, ZOOM);
      } else if (event.key === "-" || event.key === "_") {
        zoomBy(canvas, 1 / ZOOM);
      } else if (event.key === "0") {
        fit(canvas);
      } else {
        return;
      }
      event.preventDefault();
    });
  }

  function bindButtons(toolbar, canvas) {
    toolbar.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-diagram-action]");
      if (!button) {
        return;
      }
      var action = button.getAttribute("data-diagram-action");
      if (action === "zoom-in") {
        zoomBy(canvas, ZOOM);
      } else if (action === "zoom-out") {
        zoomBy(canvas, 1 / ZOOM);
      } else {
        fit(canvas);
      }
    });
    toolbar.hidden = false;
  }

  function show(container) {
    var url = container.getAttribute("data-xml-url");
    if (!url) {
      message(container, "The diagram is not available for this page.");
      return;
    }
    if (!window.BpmnJS) {
      message(container, "The diagram viewer could not be loaded; the steps are listed below.");
      return;
    }
    container.setAttribute("aria-busy", "true");
    var viewer = new window.BpmnJS({ container: container });
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/xml" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("the server answered " + response.status + " " + response.statusText);
        }
        return response.text();
      })
      .then(function (xml) {
        return viewer.importXML(xml).catch(function (err) {
          throw new Error("the diagram could not be drawn (" + (err && err.message || err) + ")");
        });
      })
      .then(function () {
        var canvas = viewer.get("canvas");
        fit(canvas);
        mark(viewer, container);
        bindKeys(container, canvas);
        var toolbar = container.parentNode.querySelector(".diagram-toolbar");
        if (toolbar) {
          bindButtons(toolbar, canvas);
        }
        container.setAttribute("data-diagram-state", "ready");
      })
      .catch(function (err) {
        viewer.destroy();
        message(container, "The diagram could not be loaded: " + (err && err.message || err) + ".");
      })
      .then(function () {
        container.removeAttribute("aria-busy");
      });
  }

  function start() {
    var container = document.getElementById("diagram");
    if (container) {
      show(container);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
