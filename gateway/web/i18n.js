/* Texts of the web frontend in Simplified Chinese and English: i18n/<language>.json.
 *
 * The language follows the browser (navigator.languages) until the user picks one with the
 * switch; the choice is remembered on this device (localStorage "vingw.lang", nothing else).
 * Keys are flat ("problem.invalid_vin.title"); a value is a string with {name} placeholders, or
 * {"one": ..., "other": ...} for counts (Intl.PluralRules picks the form).
 * Shared by the catalogue (index.html) and the privacy policy page.
 */
"use strict";

window.VinGwI18n = (() => {
  const LANGUAGES = ["en", "zh-CN"];
  const STORE_KEY = "vingw.lang";
  const texts = {};
  let lang = "en";

  function stored() {
    try {
      const value = window.localStorage.getItem(STORE_KEY);
      return LANGUAGES.includes(value) ? value : null;
    } catch {
      return null; // storage disabled: follow the browser
    }
  }

  /** The language of the browser's preference list we have texts for (English otherwise). */
  function fromBrowser() {
    const prefs =
      navigator.languages && navigator.languages.length
        ? navigator.languages
        : [navigator.language || "en"];
    for (const pref of prefs) {
      const p = String(pref).toLowerCase();
      if (p === "zh" || p.startsWith("zh-")) return "zh-CN";
      if (p === "en" || p.startsWith("en-")) return "en";
    }
    return "en";
  }

  function preferred() {
    return stored() || fromBrowser();
  }

  async function load(languages) {
    await Promise.all(
      languages.map(async (l) => {
        if (texts[l]) return;
        const response = await fetch(`i18n/${l}.json`, {
          credentials: "omit",
          cache: "no-cache",
          referrerPolicy: "no-referrer",
        });
        if (!response.ok) throw new Error("texts not loaded");
        texts[l] = await response.json();
      }),
    );
  }

  function raw(key) {
    const own = texts[lang] && texts[lang][key];
    if (own !== undefined) return own;
    const en = texts.en && texts.en[key];
    return en !== undefined ? en : key;
  }

  function fill(template, params) {
    return String(template).replace(/\{(\w+)\}/g, (whole, name) =>
      params && params[name] !== undefined && params[name] !== null ? String(params[name]) : whole,
    );
  }

  /** The text of ``key`` in the current language, placeholders filled from ``params``. */
  function t(key, params) {
    let value = raw(key);
    if (value !== null && typeof value === "object") {
      const n = params && typeof params.n === "number" ? params.n : 0;
      const form = new Intl.PluralRules(lang).select(n);
      value = value[form] !== undefined ? value[form] : value.other;
    }
    return fill(value, params);
  }

  function has(key) {
    return Boolean(texts[lang] && texts[lang][key] !== undefined);
  }

  /** The plain text of ``key`` in language ``l`` (no placeholders), or null. */
  function textIn(l, key) {
    const value = texts[l] && texts[l][key];
    return typeof value === "string" ? value : null;
  }

  /** ``t`` as DOM nodes: placeholders whose parameter is a Node are inserted as that node. */
  function nodes(key, params) {
    const template = String(raw(key));
    const out = [];
    let last = 0;
    for (const m of template.matchAll(/\{(\w+)\}/g)) {
      out.push(template.slice(last, m.index));
      const value = params ? params[m[1]] : undefined;
      if (value instanceof Node) out.push(value);
      else out.push(value === undefined || value === null ? m[0] : String(value));
      last = m.index + m[0].length;
    }
    out.push(template.slice(last));
    return out.filter((part) => part !== "");
  }

  /** Translate every [data-i18n] text and [data-i18n-attr] attribute under ``root``. */
  function apply(root) {
    for (const node of root.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    for (const node of root.querySelectorAll("[data-i18n-attr]")) {
      for (const pair of node.dataset.i18nAttr.split(";")) {
        const [attr, key] = pair.split(":");
        if (attr && key) node.setAttribute(attr.trim(), t(key.trim()));
      }
    }
    document.documentElement.lang = lang;
    for (const button of document.querySelectorAll("[data-lang]")) {
      button.setAttribute("aria-pressed", button.dataset.lang === lang ? "true" : "false");
    }
  }

  /** Switch to ``l`` (remembered on this device when ``remember``). */
  function use(l, { remember = false } = {}) {
    lang = LANGUAGES.includes(l) ? l : "en";
    if (remember) {
      try {
        window.localStorage.setItem(STORE_KEY, lang);
      } catch {
        // storage disabled: the choice lasts for this page only
      }
    }
  }

  function dateTime(value, options) {
    const d = value instanceof Date ? value : new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return new Intl.DateTimeFormat(
      lang,
      options || { dateStyle: "medium", timeStyle: "short" },
    ).format(d);
  }

  function number(value) {
    return new Intl.NumberFormat(lang).format(value);
  }

  /** A country's name in the current language from its ISO 3166-1 alpha-2 code. */
  function country(code, fallback) {
    if (!code) return fallback || null;
    try {
      return new Intl.DisplayNames([lang], { type: "region" }).of(code) || fallback || code;
    } catch {
      return fallback || code;
    }
  }

  return {
    LANGUAGES,
    apply,
    country,
    dateTime,
    has,
    load,
    nodes,
    number,
    preferred,
    t,
    textIn,
    use,
    get lang() {
      return lang;
    },
  };
})();
