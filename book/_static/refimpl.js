// Wide displays (book/_ext/presentation.py adds this script to every page).
// Once MathJax has typeset the page, a display that is wider than its column is shrunk to fit
// when 3/4 of its size or more fits, and otherwise gets the class refimpl-scroll (a visible
// scroll bar and a shadow, refimpl.css). Each container records its natural width in
// data-natural-width, so that the render check can measure what was too wide. Runs again
// when the window changes width.
(function () {
  "use strict";
  const MIN_SCALE = 0.75;

  function fit() {
    document.querySelectorAll('mjx-container[display="true"]').forEach((c) => {
      if (c.dataset.baseFontSize === undefined) c.dataset.baseFontSize = c.style.fontSize || "";
      c.style.fontSize = c.dataset.baseFontSize;
      c.classList.remove("refimpl-scroll");
      const math = c.querySelector("mjx-math");
      if (!math || c.clientWidth === 0) return;
      const need = math.getBoundingClientRect().width;
      const room = c.clientWidth;
      c.dataset.naturalWidth = need.toFixed(1);
      if (need <= room + 1) return;
      const scale = (room - 2) / need;
      if (scale >= MIN_SCALE) {
        const base = parseFloat(c.dataset.baseFontSize) || 100;
        c.style.fontSize = (base * scale).toFixed(2) + "%";
      } else {
        c.classList.add("refimpl-scroll");
      }
    });
  }

  function start(tries) {
    const mj = window.MathJax;
    if (!(mj && mj.startup && mj.startup.promise)) {
      if (tries < 200) setTimeout(() => start(tries + 1), 50);   // MathJax is still loading
      return;
    }
    mj.startup.promise.then(fit);
    document.addEventListener("toggle", fit, true);   // displays in a folded block just opened
    let width = window.innerWidth;
    window.addEventListener("resize", () => {
      if (window.innerWidth !== width) {
        width = window.innerWidth;
        fit();
      }
    });
  }

  if (!document.querySelector(".math")) return;   // a page without mathematics
  start(0);
})();
