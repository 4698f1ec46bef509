/* The privacy policy page: show the language chosen on this device (or the browser's) and let
 * the switch change it. Without JavaScript both languages are shown, one after the other. */
"use strict";

(() => {
  const I18N = window.VinGwI18n;

  function show(lang) {
    let shown = null;
    for (const article of document.querySelectorAll("[data-policy-lang]")) {
      article.hidden = article.dataset.policyLang !== lang;
      if (!article.hidden) shown = article;
    }
    if (!shown) return;
    for (const node of document.querySelectorAll("[data-lang-only]")) {
      node.hidden = node.dataset.langOnly !== lang;
    }
    document.documentElement.lang = lang;
    document.title = shown.dataset.title;
    for (const button of document.querySelectorAll("[data-lang]")) {
      button.setAttribute("aria-pressed", button.dataset.lang === lang ? "true" : "false");
    }
  }

  for (const button of document.querySelectorAll("[data-lang]")) {
    button.addEventListener("click", () => {
      I18N.use(button.dataset.lang, { remember: true });
      show(I18N.lang);
    });
  }
  I18N.use(I18N.preferred());
  show(I18N.lang);
})();
