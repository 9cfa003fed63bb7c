// Shows a bar's value under its chart on tap, click or keyboard focus (a phone cannot hover).
// Without this script the values are still in each bar's <title> and in the list under the chart.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("svg.chart").forEach(function (chart) {
    var readout = chart.nextElementSibling;
    if (!readout || !readout.classList.contains("chart-readout")) return;
    function show(bar) {
      chart.querySelectorAll(".bar.selected").forEach(function (b) { b.classList.remove("selected"); });
      bar.classList.add("selected");
      readout.textContent = bar.dataset.day + ": " + bar.dataset.value + " " + chart.dataset.unit;
    }
    chart.querySelectorAll(".bar[tabindex]").forEach(function (bar) {
      bar.addEventListener("click", function () { show(bar); });
      bar.addEventListener("focus", function () { show(bar); });
    });
  });
});
