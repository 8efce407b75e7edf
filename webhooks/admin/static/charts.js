// Draws the metrics page's charts from the data-* attributes the server rendered (no inline script: CSP).
(function () {
  "use strict";
  var palette = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2"];
  function parse(el, name) { return JSON.parse(el.getAttribute("data-" + name) || "null"); }
  function seriesChart(el) {
    var labels = parse(el, "labels"), series = parse(el, "series"), unit = el.getAttribute("data-unit");
    var datasets = Object.keys(series).map(function (level, i) {
      return { label: level, data: series[level], borderColor: palette[i % palette.length],
               backgroundColor: palette[i % palette.length], spanGaps: true };
    });
    return { type: el.getAttribute("data-kind"), data: { labels: labels, datasets: datasets },
             options: { animation: false, scales: { y: { beginAtZero: true, title: { display: !!unit, text: unit } } } } };
  }
  function attainmentChart(el) {
    var rows = parse(el, "rows").filter(function (r) { return r.percent !== null; });
    return { type: "bar", data: { labels: rows.map(function (r) { return r.level + " " + r.clock; }),
             datasets: [{ label: "% met", data: rows.map(function (r) { return r.percent; }), backgroundColor: palette[1] }] },
             options: { animation: false, scales: { y: { min: 0, max: 100 } } } };
  }
  function csatChart(el) {
    var rows = parse(el, "rows");
    return { type: "bar", data: { labels: rows.map(function (r) { return r.ticket + " (" + r.customer + ")"; }),
             datasets: [{ label: "before", data: rows.map(function (r) { return r.before; }), backgroundColor: palette[2] },
                        { label: "after", data: rows.map(function (r) { return r.after; }), backgroundColor: palette[0] }] },
             options: { animation: false, scales: { y: { min: 0, max: 100 } } } };
  }
  var builders = { line: seriesChart, bar: seriesChart, attainment: attainmentChart, csat: csatChart };
  document.querySelectorAll("canvas[data-kind]").forEach(function (el) {
    var chart = new Chart(el, builders[el.getAttribute("data-kind")](el));
    el.setAttribute("data-drawn", String(chart.data.datasets.length));
  });
})();
