(function () {
  "use strict";

  function sortKey(row, index, type) {
    var cell = row.cells[index];
    if (!cell) { return null; }
    var v = cell.getAttribute("data-v");
    if (type === "text") { return (v === null ? cell.textContent : v).trim().toLowerCase(); }
    if (v === null || v === "") { return null; }
    var x = parseFloat(v);
    return isNaN(x) ? null : x;
  }

  function sortTable(table, th) {
    var headers = Array.prototype.slice.call(th.parentNode.children);
    var index = headers.indexOf(th);
    var type = th.getAttribute("data-type") || "num";
    var state = th.getAttribute("aria-sort");
    var descending;
    if (state === "descending") { descending = false; }
    else if (state === "ascending") { descending = true; }
    else { descending = type === "num" && th.getAttribute("data-hib") !== "0"; }
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortKey(a, index, type), y = sortKey(b, index, type);
      if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
      var c = type === "text" ? (x < y ? -1 : (x > y ? 1 : 0)) : x - y;
      return descending ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.querySelectorAll("thead th"), function (th) {
      var button = th.querySelector("button.sort");
      if (button) { button.addEventListener("click", function () { sortTable(table, th); }); }
    });
  });

  // example galleries: show the model picked in the menu (without this script every model is shown)
  Array.prototype.forEach.call(document.querySelectorAll(".gallery"), function (gallery) {
    var select = gallery.querySelector("select");
    if (!select) { return; }
    function show() {
      Array.prototype.forEach.call(gallery.querySelectorAll(".top"), function (top) {
        top.classList.toggle("shown", top.getAttribute("data-model") === select.value);
      });
    }
    gallery.classList.add("one-model");
    select.addEventListener("change", show);
    show();
  });

  function openTarget() {
    var id = window.location.hash.slice(1);
    var el = id ? document.getElementById(id) : null;
    if (el && el.tagName === "DETAILS") { el.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  Array.prototype.forEach.call(document.querySelectorAll("a[href^='#task-']"), function (a) {
    a.addEventListener("click", function () {
      var el = document.getElementById(a.getAttribute("href").slice(1));
      if (el && el.tagName === "DETAILS") { el.open = true; }
    });
  });
  openTarget();
})();
