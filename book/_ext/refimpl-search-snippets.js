// The search page's snippets, from the page texts in refimpl-search-pages.js (written by
// book/_ext/publish.py at build time, formulas as Unicode text) instead of fetching each page:
// Sphinx's search fetches the page of every hit to cut a snippet from it, which a browser
// refuses under file:// and which shows formulas as raw TeX. Only this page loads this file.
(() => {
  const pages = window.REFIMPL_SEARCH_PAGES || {};
  const fetchPage = window.fetch.bind(window);
  window.fetch = (resource, options) => {
    const url = new URL(typeof resource === "string" ? resource : resource.url, document.baseURI);
    const root = new URL(document.documentElement.dataset.content_root || "./", document.baseURI);
    const key = decodeURI(url.pathname).slice(decodeURI(root.pathname).length);
    if (Object.prototype.hasOwnProperty.call(pages, key)) {
      return Promise.resolve(new Response(pages[key], {headers: {"Content-Type": "text/html"}}));
    }
    return fetchPage(resource, options);
  };
})();
