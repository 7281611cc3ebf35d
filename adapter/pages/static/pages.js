// Draws every plot of the page from the JSON figure beside it (built on the server), and fetches
// the sections the study page sends after it (data-fragment: they read the whole study once after
// a write). Loaded from this server, like plotly.min.js: the pages run where no CDN is reachable.
"use strict";
function drawPlots(root) {
  root.querySelectorAll("[data-figure]").forEach(function (element) {
    var figure = JSON.parse(document.getElementById(element.dataset.figure).textContent);
    Plotly.newPlot(element, figure.data, figure.layout, {displaylogo: false, responsive: true});
  });
}
document.addEventListener("DOMContentLoaded", function () {
  drawPlots(document);
  document.querySelectorAll("[data-fragment]").forEach(function (section) {
    fetch(section.dataset.fragment, {credentials: "same-origin", headers: {"X-Fragment": "1"}})
      .then(function (answer) {
        if (!answer.ok) { throw new Error("the server answered " + answer.status); }
        return answer.text();
      })
      .then(function (html) {
        var box = document.createElement("div");
        box.className = "fragment";
        box.innerHTML = html;
        section.replaceWith(box);
        drawPlots(box);
      })
      .catch(function (error) {
        section.querySelector(".loading").textContent = "This section could not be loaded (" + error.message +
          "): reload the page, or open it whole with ?whole=1.";
      });
  });
});
