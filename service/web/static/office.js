// The community office's dashboard charts (ECharts, canvas renderer). The numbers come
// from the chart element's data-chart attribute (no inline script: the CSP forbids
// it); the table under the charts has the same numbers for those who do not see them.
"use strict";
(function () {
  var COLOURS = ["#a3161a", "#176639", "#1d4ed8", "#8a4b00"];

  function flowsOption(data) {
    return {
      color: COLOURS,
      animation: false,
      tooltip: { trigger: "axis", renderMode: "richText" },
      legend: { top: 0 },
      grid: { left: 8, right: 8, bottom: 8, top: 56, containLabel: true },
      xAxis: { type: "category", data: data.periods },
      yAxis: { type: "value", minInterval: 1 },
      series: data.series.map(function (s) { return { name: s.name, type: "bar", data: s.data }; }),
    };
  }

  function outstandingOption(data) {
    return {
      color: [COLOURS[0]],
      animation: false,
      tooltip: { trigger: "axis", renderMode: "richText" },
      legend: { top: 0 },
      grid: { left: 8, right: 8, bottom: 8, top: 40, containLabel: true },
      xAxis: { type: "category", data: data.periods },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ name: data.outstanding.name, type: "line", data: data.outstanding.data }],
    };
  }

  function charts() {
    if (typeof window.echarts === "undefined") return;
    var made = [];
    document.querySelectorAll("[data-chart]").forEach(function (node) {
      var data = JSON.parse(node.dataset.chart);
      var chart = window.echarts.init(node, null, { renderer: "canvas" });
      chart.setOption(node.dataset.kind === "outstanding" ? outstandingOption(data) : flowsOption(data));
      node.dataset.rendered = "yes";
      made.push(chart);
    });
    window.addEventListener("resize", function () {
      made.forEach(function (chart) { chart.resize(); });
    });
  }

  window.ledgerApp.onReady(charts);
})();
