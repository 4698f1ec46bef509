/* The catalogue web frontend of vin-gateway: plain JavaScript, no build step, no third party.
 *
 * Privacy rules this file keeps (a VIN is personal information under PIPL):
 * - the VIN travels only in the POST bodies of /v1/attestations and /v1/lookups; it is never
 *   put in a URL, a fragment, a header, a cookie or the browser history;
 * - the search history (terms 2.2 B) is the only place a VIN is kept: in this browser's
 *   localStorage, per account, at most HISTORY_MAX entries for HISTORY_DAYS days, never sent
 *   anywhere; the user can delete one entry, clear it, or turn it off (which deletes it);
 * - the VINs of the vehicles an owner declared are kept in this browser too, and only there
 *   (grants.js says how);
 * - the access token and the query shown live in the variables below only (a reload logs out);
 * - nothing is written to the console;
 * - every request goes to this gateway (relative URLs; the CSP allows nothing else).
 */
"use strict";

(() => {
  const I18N = window.VinGwI18n;
  const t = I18N.t;

  const HISTORY_MAX = 50; // entries kept on the device, newest first
  const HISTORY_DAYS = 30; // days an entry is kept
  const HISTORY_PREFIX = "vingw.history."; // + account id: one history per account

  let token = null; // the bearer access token, in memory only
  let policy = null; // {version, effective_date, text_url} of the policy in force
  let account = null; // GET /v1/me
  let lastQuery = null; // {vin, declaration} of the result shown, to ask again for an alternative
  let lastResult = null; // the lookup answer shown
  let busy = false;
  let alertRenderer = null; // () => nodes of the alert shown (rendered again on a language switch)
  let statusMessage = null; // {key, params} of the status line
  let fieldErrors = new Map(); // field id -> {key, params}
  let countdown = null; // {deadline (ms), timer} of the Retry-After shown
  let admin = null; // the operators' console (admin.js), for admins
  let grantsUi = null; // vehicles, grants and the workshop's side (grants.js)

  const SCREENS = [
    "login",
    "register",
    "lookup",
    "vehicles",
    "grants",
    "workshop",
    "data",
    "console",
  ];
  const $ = (id) => document.getElementById(id);

  /** A DOM element with attributes and text/element children (never innerHTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
    }
    return node;
  }

  // --- screens, messages and field marks --------------------------------------------------------

  function show(name, { focus = true } = {}) {
    for (const s of SCREENS) $("screen-" + s).hidden = s !== name;
    $("main").dataset.screen = name; // the messages take the width of the screen's card
    $("nav").hidden = token === null;
    for (const [id, screen] of [
      ["nav-lookup", "lookup"],
      ["nav-vehicles", "vehicles"],
      ["nav-grants", "grants"],
      ["nav-workshop", "workshop"],
      ["nav-data", "data"],
      ["nav-console", "console"],
    ]) {
      $(id).setAttribute("aria-current", name === screen ? "page" : "false");
    }
    if (focus) {
      const heading = $("screen-" + name).querySelector("h1");
      if (heading) heading.focus();
    }
  }

  function stopCountdown() {
    if (countdown && countdown.timer) clearInterval(countdown.timer);
    countdown = null;
  }

  function clearMessages() {
    stopCountdown();
    alertRenderer = null;
    statusMessage = null;
    $("alert").replaceChildren();
    $("status").textContent = "";
  }

  function renderAlert() {
    const nodes = alertRenderer ? alertRenderer() : [];
    $("alert").replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
  }

  function renderStatus() {
    $("status").textContent = statusMessage ? t(statusMessage.key, statusMessage.params) : "";
  }

  /** A status line (polite): ``key`` of the texts with ``params``. */
  function say(key, params) {
    stopCountdown();
    alertRenderer = null;
    $("alert").replaceChildren();
    statusMessage = { key, params };
    renderStatus();
  }

  /** An alert made by ``render`` (called again when the language changes). */
  function alertWith(render) {
    statusMessage = null;
    $("status").textContent = "";
    alertRenderer = render;
    renderAlert();
  }

  /** An alert with a title and what to do, both text keys. */
  function simpleAlert(titleKey, actionKey, params, extra) {
    alertWith(() => [
      el("strong", {}, t(titleKey, params)),
      actionKey ? el("p", {}, t(actionKey, params)) : null,
      extra ? extra() : null,
    ]);
  }

  function setDescribedBy(node, id, on) {
    const ids = (node.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
    const next = on ? [...new Set([...ids, id])] : ids.filter((x) => x !== id);
    if (next.length) node.setAttribute("aria-describedby", next.join(" "));
    else node.removeAttribute("aria-describedby");
  }

  function renderFieldErrors() {
    for (const node of document.querySelectorAll(".field-error")) {
      const fieldId = node.id.replace(/-error$/, "");
      const field = $(fieldId);
      const error = fieldErrors.get(fieldId);
      node.hidden = !error;
      node.textContent = error ? t(error.key, error.params) : "";
      if (!field) continue;
      if (error) field.setAttribute("aria-invalid", "true");
      else field.removeAttribute("aria-invalid");
      setDescribedBy(field, node.id, Boolean(error));
    }
  }

  /** Mark exactly these fields ({field id: {key, params}}); every other mark is cleared. */
  function markFields(marks) {
    fieldErrors = new Map(Object.entries(marks || {}));
    renderFieldErrors();
  }

  function clearFields() {
    markFields({});
  }

  /** A marked field the user changes is no longer marked (the message above stays). */
  function unmarkOnEdit(event) {
    const target = event.target;
    if (!target || !target.id) return;
    const id = target.dataset.mark || (target.name === "basis" ? "basis-group" : target.id);
    if (fieldErrors.delete(id)) renderFieldErrors();
  }

  function formatDuration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = s % 60;
    if (h) return t("duration.hm", { h, m });
    if (m) return t("duration.ms", { m, s: rest });
    return t("duration.s", { s: rest });
  }

  /** Seconds from a Retry-After value (delta-seconds or an HTTP date), or null. */
  function retrySeconds(retryAfter) {
    if (!retryAfter) return null;
    const seconds = /^\d+$/.test(retryAfter)
      ? Number(retryAfter)
      : Math.ceil((Date.parse(retryAfter) - Date.now()) / 1000);
    return Number.isFinite(seconds) ? Math.max(0, seconds) : null;
  }

  function tickCountdown() {
    const timer = $("countdown");
    if (!countdown || !timer) return;
    const left = Math.max(0, Math.ceil((countdown.deadline - Date.now()) / 1000));
    timer.dataset.seconds = String(left);
    timer.textContent = formatDuration(left);
    if (left === 0) {
      clearInterval(countdown.timer);
      countdown.timer = null;
      const line = $("retry-line");
      if (line) line.replaceChildren(t("retry.now"));
    }
  }

  function startCountdown(seconds) {
    stopCountdown();
    countdown = { deadline: Date.now() + seconds * 1000, timer: null };
    countdown.timer = setInterval(tickCountdown, 1000);
  }

  // --- problems: what happened, what to do ------------------------------------------------------

  const CHECK_VALUES = Object.fromEntries(
    [..."0123456789"]
      .map((d) => [d, Number(d)])
      .concat(
        Object.entries({
          A: 1,
          B: 2,
          C: 3,
          D: 4,
          E: 5,
          F: 6,
          G: 7,
          H: 8,
          J: 1,
          K: 2,
          L: 3,
          M: 4,
          N: 5,
          P: 7,
          R: 9,
          S: 2,
          T: 3,
          U: 4,
          V: 5,
          W: 6,
          X: 7,
          Y: 8,
          Z: 9,
        }),
      ),
  );
  const CHECK_WEIGHTS = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
  const LOOKALIKES = { O: "0", Q: "0", I: "1" };

  /** The check digit the other 16 characters give (ISO 3779 / 49 CFR 565), or null. */
  function checkDigit(vin) {
    if (vin.length !== 17) return null;
    let sum = 0;
    for (let i = 0; i < 17; i += 1) {
      const value = CHECK_VALUES[vin[i]];
      if (value === undefined) return null;
      sum += value * CHECK_WEIGHTS[i];
    }
    const r = sum % 11;
    return r === 10 ? "X" : String(r);
  }

  /** Printable ASCII is shown; any other character never is (it may look like a VIN letter,
   * or be a control or a bidi override), as the vin library does. */
  function isPrintableAscii(ch) {
    return ch !== undefined && /^[\x21-\x7e]$/.test(ch);
  }

  /** What is wrong with a VIN before anything is sent: length and characters (never O, I, Q). */
  function localVinProblems(vin) {
    const errors = [];
    if (vin.length !== 17) errors.push({ code: "length" });
    [...vin].forEach((ch, i) => {
      if (!/^[A-HJ-NPR-Z0-9]$/.test(ch))
        errors.push({ code: "invalid_character", position: i + 1 });
    });
    return errors;
  }

  function vinErrorText(e, vin) {
    const pos = Number.isInteger(e.position) ? e.position : null;
    const raw = vin && pos ? [...vin][pos - 1] : undefined;
    const ch = isPrintableAscii(raw) ? raw : "";
    switch (e.code) {
      case "length":
        return t("vinError.length", { n: vin ? [...vin].length : 0 });
      case "invalid_character": {
        if (!ch) return pos ? t("vinError.notAscii", { pos }) : t("vinError.otherWhole");
        const like = LOOKALIKES[ch];
        return (
          t("vinError.invalid_character", { pos, char: ch }) +
          (like ? " " + t("vinError.didYouMean", { char: like }) : "")
        );
      }
      case "check_digit_mismatch": {
        const expected = vin ? checkDigit(vin) : null;
        return expected
          ? t("vinError.check_digit_mismatch", { pos: pos || 9, found: ch || vin[8], expected })
          : t("vinError.check_digit_mismatch_short", { pos: pos || 9 });
      }
      case "invalid_model_year":
        return t("vinError.invalid_model_year", { pos: pos || 10, char: ch });
      default:
        return pos ? t("vinError.other", { pos }) : t("vinError.otherWhole");
    }
  }

  /** The VIN with the characters at the given 1-based positions marked. */
  function markedVin(vin, positions) {
    const line = el("p", { class: "vin-marked", "aria-hidden": "true" });
    [...vin].forEach((ch, i) => {
      const pos = i + 1;
      const shown = isPrintableAscii(ch) ? ch : "\ufffd";
      line.append(
        positions.has(pos)
          ? el("mark", { title: t("vinError.positionTitle", { pos }) }, shown)
          : el("span", {}, shown),
      );
    });
    return line;
  }

  const REQUIREMENTS = [
    [/at least (\d+) characters/, "password.length"],
    [/leading or trailing whitespace/, "password.whitespace"],
    [/email address/, "password.email"],
    [/at least (\d+) different characters/, "password.distinct"],
  ];

  function requirementText(r) {
    for (const [pattern, key] of REQUIREMENTS) {
      const m = String(r).match(pattern);
      if (m) return t(key, { n: m[1] ? Number(m[1]) : undefined });
    }
    return String(r);
  }

  /** Field names of ``invalid_request`` errors -> the label key of the field. */
  const FIELD_LABELS = {
    vin: "lookup.vin",
    basis: "decl.legend",
    purpose: "decl.purpose",
    "owner_authorization.ref": "decl.ref",
    "owner_authorization.valid_until": "decl.until",
    grant_id: "decl.grant",
    label: "vehicles.label",
    vehicle_id: "grants.vehicle",
    purposes: "grants.purposes",
    valid_until: "grants.until",
    max_uses: "grants.maxUses",
    workshop_code: "grants.workshopCode",
    code: "workshop.code",
    email: "field.email",
    password: "field.password",
    company: "field.company",
    reason: "console.reason",
  };

  const BLOCK_CODES = new Set(["rate_limited", "suspicious_usage_blocked", "login_throttled"]);

  function policyLink() {
    const href = policy ? policy.text_url : "privacy-policy.html";
    return el("a", { href, target: "_blank", rel: "noopener noreferrer" }, t("block.contestLink"));
  }

  /** The alert's nodes for a failed request ``result`` ({status, problem, retryAfter}). */
  function problemNodes(result, ctx) {
    const problem = result.problem || {};
    const code =
      typeof problem.code === "string" ? problem.code : result.status === 0 ? "network" : "unknown";
    const known = I18N.has(`problem.${code}.title`);
    const title = known ? t(`problem.${code}.title`) : problem.title || t("problem.unknown.title");
    const action = known ? t(`problem.${code}.action`) : t("problem.unknown.action");
    const out = [el("strong", {}, title), el("p", {}, action)];
    const vin = ctx && ctx.vin;

    const errors = Array.isArray(problem.errors) ? problem.errors : [];
    if (code === "invalid_vin" && errors.length) {
      const positions = new Set(errors.map((e) => e.position).filter(Number.isInteger));
      if (vin && positions.size) out.push(markedVin(vin, positions));
      out.push(
        el(
          "ul",
          { class: "errors" },
          errors.map((e) => el("li", {}, vinErrorText(e, vin))),
        ),
      );
    } else if (errors.length) {
      out.push(
        el(
          "ul",
          { class: "errors" },
          errors.map((e) => {
            const label = e.field && FIELD_LABELS[e.field] ? t(FIELD_LABELS[e.field]) : null;
            const text = I18N.has(`invalid.${e.code}`)
              ? t(`invalid.${e.code}`)
              : t("invalid.other");
            return el("li", {}, label ? t("invalid.field", { field: label, text }) : text);
          }),
        ),
      );
    }
    const requirements = Array.isArray(problem.requirements) ? problem.requirements : [];
    if (requirements.length) {
      out.push(
        el("p", {}, t("password.requirements")),
        el(
          "ul",
          {},
          requirements.map((r) => el("li", {}, requirementText(r))),
        ),
      );
    }

    if (BLOCK_CODES.has(code)) {
      const p =
        typeof problem.policy === "string"
          ? problem.policy
          : code === "login_throttled"
            ? "login"
            : "flood";
      const policyKnown = I18N.has(`policy.${p}.reason`);
      out.push(
        el(
          "p",
          {},
          el("strong", { class: "why" }, t("block.why")),
          policyKnown ? t(`policy.${p}.reason`) : t("policy.unknown.reason"),
        ),
        el("p", {}, policyKnown ? t(`policy.${p}.action`) : t("policy.unknown.action")),
      );
    }
    if (countdown) {
      const left = Math.max(0, Math.ceil((countdown.deadline - Date.now()) / 1000));
      const timer = el(
        "span",
        {
          id: "countdown",
          class: "countdown",
          role: "timer",
          "aria-live": "off",
          "data-seconds": String(left),
        },
        formatDuration(left),
      );
      out.push(
        el(
          "p",
          { id: "retry-line", class: "retry" },
          left > 0 ? I18N.nodes("retry.in", { time: timer }) : t("retry.now"),
        ),
      );
    } else if (result.status === 429) {
      out.push(el("p", { class: "retry" }, t("retry.later")));
    }
    if (code === "suspicious_usage_blocked" || code === "rate_limited") {
      out.push(el("p", { class: "contest" }, I18N.nodes("block.contest", { link: policyLink() })));
    }
    out.push(
      el(
        "details",
        { class: "support" },
        el("summary", {}, t("problem.details")),
        el("p", {}, t("problem.detailsText", { code, status: result.status || "-" })),
      ),
    );
    return out;
  }

  /** Fields a problem is about, in the context of the form it came from. */
  function fieldsOf(problem, ctx) {
    const code = problem && problem.code;
    const marks = {};
    const byCode = (ctx && ctx.codes) || {};
    if (byCode[code]) marks[byCode[code][0]] = { key: byCode[code][1] };
    const byField = (ctx && ctx.fields) || {};
    for (const e of Array.isArray(problem && problem.errors) ? problem.errors : []) {
      if (e.field && byField[e.field]) marks[byField[e.field]] = { key: "fieldError.invalid" };
    }
    return marks;
  }

  /** Show a failed request: the message, its countdown, and marks on the fields at fault. */
  function showProblem(result, ctx) {
    const seconds = retrySeconds(result.retryAfter);
    stopCountdown();
    if (seconds !== null && result.status >= 400) startCountdown(seconds);
    alertWith(() => problemNodes(result, ctx));
    markFields(fieldsOf(result.problem, ctx));
  }

  // --- the API ----------------------------------------------------------------------------------

  /** One request to the gateway. Returns {ok, status, data} or {ok: false, status, problem}. */
  async function api(method, path, { json, form, headers } = {}) {
    const h = new Headers(headers || {});
    h.set("Accept", "application/json, application/problem+json");
    if (token !== null) h.set("Authorization", "Bearer " + token);
    let body;
    if (json !== undefined) {
      h.set("Content-Type", "application/json");
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = new URLSearchParams(form);
    }
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: h,
        body,
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch {
      return { ok: false, status: 0, problem: { code: "network" } };
    }
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    if (response.ok) return { ok: true, status: response.status, data };
    const result = {
      ok: false,
      status: response.status,
      problem: data || {},
      retryAfter: response.headers.get("Retry-After"),
    };
    if (response.status === 401 && token !== null) logOut("session.ended");
    return result;
  }

  async function withBusy(button, work) {
    if (busy) return;
    busy = true;
    if (button) button.disabled = true;
    try {
      await work();
    } finally {
      busy = false;
      if (button) button.disabled = false;
    }
  }

  function todayIso() {
    const d = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  /** Save ``data`` as a JSON file (a blob URL: nothing is sent). */
  function download(name, data) {
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // --- registration and log in ------------------------------------------------------------------

  function renderPolicyInfo() {
    if (!policy) return;
    const link = el(
      "a",
      { href: policy.text_url, target: "_blank", rel: "noopener noreferrer" },
      t("policy.link"),
    );
    $("policy-info").replaceChildren(
      ...I18N.nodes("policy.info", {
        link,
        version: el("strong", { id: "policy-version" }, policy.version),
        date: policy.effective_date,
      }),
    );
    $("policy-version-label").textContent = t("register.versionLabel", { version: policy.version });
  }

  async function loadPolicy() {
    const result = await api("GET", "v1/privacy-policy");
    if (!result.ok) {
      $("policy-info").textContent = t("policy.failed");
      return;
    }
    policy = result.data;
    renderPolicyInfo();
  }

  const REGISTER_CTX = {
    codes: {
      email_taken: ["reg-email", "fieldError.emailTaken"],
      weak_password: ["reg-password", "fieldError.weakPassword"],
      privacy_policy_version_mismatch: ["reg-accept", "fieldError.accept"],
    },
    fields: { email: "reg-email", password: "reg-password", company: "reg-company" },
  };

  async function register(event) {
    event.preventDefault();
    const form = event.currentTarget;
    await withBusy(form.querySelector("button[type=submit]"), async () => {
      clearMessages();
      clearFields();
      if (policy === null) await loadPolicy();
      if (policy === null) return;
      const email = $("reg-email").value.trim();
      const password = $("reg-password").value;
      const missing = {};
      if (!email) missing["reg-email"] = { key: "fieldError.required" };
      else if (!/^[^\s@]+@[^\s@]+$/.test(email)) missing["reg-email"] = { key: "fieldError.email" };
      if (!password) missing["reg-password"] = { key: "fieldError.required" };
      if (Object.keys(missing).length) {
        simpleAlert("register.missingTitle", "register.missingAction");
        markFields(missing);
        $(Object.keys(missing)[0]).focus();
        return;
      }
      if (!$("reg-accept").checked) {
        simpleAlert("register.acceptTitle", "register.acceptAction");
        markFields({ "reg-accept": { key: "fieldError.accept" } });
        $("reg-accept").focus();
        return;
      }
      const body = { email, password, privacy_policy_version: policy.version };
      const company = $("reg-company").value.trim();
      if (company) body.company = company;
      const result = await api("POST", "v1/accounts", { json: body });
      if (!result.ok) {
        showProblem(result, REGISTER_CTX);
        if (result.problem && result.problem.code === "privacy_policy_version_mismatch")
          loadPolicy();
        return;
      }
      form.reset();
      $("login-email").value = email;
      show("login");
      say("register.created");
      $("login-password").focus();
    });
  }

  async function logIn(event) {
    event.preventDefault();
    const form = event.currentTarget;
    await withBusy(form.querySelector("button[type=submit]"), async () => {
      clearMessages();
      clearFields();
      const username = $("login-email").value.trim();
      const password = $("login-password").value;
      const missing = {};
      if (!username) missing["login-email"] = { key: "fieldError.required" };
      if (!password) missing["login-password"] = { key: "fieldError.required" };
      if (Object.keys(missing).length) {
        simpleAlert("login.missingTitle", "login.missingAction");
        markFields(missing);
        $(Object.keys(missing)[0]).focus();
        return;
      }
      const result = await api("POST", "v1/auth/token", { form: { username, password } });
      if (!result.ok) {
        showProblem(result, {});
        return;
      }
      token = result.data.access_token;
      form.reset();
      const me = await api("GET", "v1/me");
      account = me.ok ? me.data : null;
      $("who").textContent = account ? account.email : "";
      $("nav-console").hidden = !(account && account.role === "admin");
      renderHistory();
      show("lookup");
      say("login.done");
      await grantsUi.loadGrants({ quiet: true }); // the grants received, for the declaration
    });
  }

  function resetLookup() {
    $("lookup-form").reset();
    syncDeclaration();
    $("results").hidden = true;
    for (const id of ["vehicle", "vehicle-type", "alternatives", "parts", "category-links"]) {
      $(id).replaceChildren();
    }
    $("parts-filter").value = "";
    $("filter-status").textContent = "";
    lastQuery = null;
    lastResult = null;
  }

  function logOut(messageKey) {
    token = null;
    account = null;
    resetLookup();
    clearFields();
    $("account").replaceChildren();
    $("delete-confirm").hidden = true;
    $("who").textContent = "";
    $("nav-console").hidden = true;
    $("history-list").replaceChildren();
    if (admin) admin.reset();
    if (grantsUi) grantsUi.reset();
    renderGrantChoice();
    show("login");
    say(messageKey || "login.loggedOut");
  }

  // --- the declaration and the lookup -----------------------------------------------------------

  /** Spaces and dashes out, ASCII letters upper-cased; nothing else is mapped (a non-ASCII
   * letter such as U+017F must not become "S": the page refuses it by position instead). */
  function normalizeVin(raw) {
    return raw.replace(/[\s-]+/g, "").replace(/[a-z]/g, (c) => c.toUpperCase());
  }

  /** Show the parts of the declaration that apply to the chosen basis. */
  function syncDeclaration() {
    const chosen = document.querySelector("input[name=basis]:checked");
    const basis = chosen ? chosen.value : null;
    $("authorization").hidden = basis !== "owner_authorized";
    $("auth-ref").required = basis === "owner_authorized";
    $("auth-until").required = basis === "owner_authorized";
    $("neither-info").hidden = basis !== "neither";
    $("purpose-box").hidden = basis === "neither";
    $("grant-box").hidden = basis !== "owner_granted";
    syncGrantChoice();
  }

  /** The received active grants as the choices of the "grant" declaration; the purposes the
   * chosen grant does not cover cannot be picked. */
  function renderGrantChoice() {
    const select = $("grant-choice");
    const keep = select.value;
    const active = grantsUi ? grantsUi.activeReceived() : [];
    select.replaceChildren(
      ...active.map((g) => el("option", { value: g.id }, grantsUi.receivedLabel(g))),
    );
    if (active.some((g) => g.id === keep)) select.value = keep;
    $("grant-pick").hidden = active.length === 0;
    $("grant-none").hidden = active.length !== 0;
    syncGrantChoice();
  }

  function syncGrantChoice() {
    const chosen = document.querySelector("input[name=basis]:checked");
    const granted = chosen && chosen.value === "owner_granted";
    const grant =
      granted && grantsUi
        ? grantsUi.activeReceived().find((g) => g.id === $("grant-choice").value)
        : null;
    const allowed = grant && Array.isArray(grant.purposes) ? grant.purposes : null;
    const purpose = $("purpose");
    for (const option of purpose.options) {
      option.disabled = Boolean(allowed) && !allowed.includes(option.value);
    }
    if (allowed && allowed.length && !allowed.includes(purpose.value)) purpose.value = allowed[0];
  }

  async function chooseGranted() {
    const chosen = document.querySelector("input[name=basis]:checked");
    if (!chosen || chosen.value !== "owner_granted" || !grantsUi) return;
    await grantsUi.loadGrants({ quiet: true });
    renderGrantChoice();
  }

  /** "Use for a lookup" on a received grant: the lookup form with that grant as declaration. */
  function useGrant(grantId) {
    clearMessages();
    clearFields();
    show("lookup", { focus: false });
    $("basis-granted").checked = true;
    syncDeclaration();
    renderGrantChoice();
    $("grant-choice").value = grantId;
    syncGrantChoice();
    say("decl.grantChosen");
    $("vin").focus();
  }

  /** The user's declaration from the form, {neither: true}, or null (with the fields marked). */
  function readDeclaration() {
    const chosen = document.querySelector("input[name=basis]:checked");
    if (!chosen) {
      simpleAlert("decl.chooseTitle", "decl.chooseAction");
      markFields({ "basis-group": { key: "fieldError.basis" } });
      $("basis-owner").focus();
      return null;
    }
    if (chosen.value === "neither") return { neither: true };
    const declaration = { basis: chosen.value, purpose: $("purpose").value };
    if (chosen.value === "owner_granted") {
      const grantId = $("grant-pick").hidden ? "" : $("grant-choice").value;
      if (!grantId) {
        simpleAlert("decl.noGrantTitle", "decl.noGrant");
        markFields({ "basis-group": { key: "fieldError.grant" } });
        $("basis-granted").focus();
        return null;
      }
      declaration.grant_id = grantId;
    }
    if (chosen.value === "owner_authorized") {
      const ref = $("auth-ref").value.trim();
      const until = $("auth-until").value; // YYYY-MM-DD
      const marks = {};
      if (!ref) marks["auth-ref"] = { key: "fieldError.authRef" };
      if (!/^\d{4}-\d{2}-\d{2}$/.test(until)) marks["auth-until"] = { key: "fieldError.authUntil" };
      if (Object.keys(marks).length) {
        alertWith(() => [
          el("strong", {}, t("decl.incompleteTitle")),
          el("p", {}, t("decl.incompleteAction")),
          el(
            "ul",
            { class: "errors" },
            Object.entries(marks).map(([id, m]) =>
              el(
                "li",
                {},
                t("invalid.field", {
                  field: t(id === "auth-ref" ? "decl.ref" : "decl.until"),
                  text: t(m.key),
                }),
              ),
            ),
          ),
        ]);
        markFields(marks);
        $(Object.keys(marks)[0]).focus();
        return null;
      }
      const [y, m, d] = until.split("-").map(Number);
      const validUntil = Math.floor(new Date(y, m - 1, d, 23, 59, 59).getTime() / 1000);
      if (validUntil < Date.now() / 1000) {
        simpleAlert(
          "problem.owner_authorization_expired.title",
          "problem.owner_authorization_expired.action",
        );
        markFields({ "auth-until": { key: "fieldError.authExpired" } });
        $("auth-until").focus();
        return null;
      }
      declaration.owner_authorization = { ref, valid_until: validUntil };
    }
    return declaration;
  }

  const LOOKUP_CTX_BASE = {
    codes: {
      invalid_vin: ["vin", "fieldError.vin"],
      attestation_vin_mismatch: ["vin", "fieldError.vin"],
      owner_authorization_missing: ["auth-ref", "fieldError.authRef"],
      owner_authorization_expired: ["auth-until", "fieldError.authExpired"],
      purpose_out_of_scope: ["purpose", "fieldError.purpose"],
      attestation_purpose_invalid: ["purpose", "fieldError.purpose"],
      attestation_basis_invalid: ["basis-group", "fieldError.basis"],
      owner_grant_required: ["basis-group", "fieldError.grantRequired"],
      grant_unknown: ["grant-choice", "fieldError.grantChoice"],
      grant_revoked: ["grant-choice", "fieldError.grantChoice"],
      grant_expired: ["grant-choice", "fieldError.grantChoice"],
      grant_exhausted: ["grant-choice", "fieldError.grantChoice"],
      grant_vehicle_mismatch: ["vin", "fieldError.grantVehicle"],
      grant_purpose_out_of_scope: ["purpose", "fieldError.grantPurpose"],
    },
    fields: {
      vin: "vin",
      basis: "basis-group",
      purpose: "purpose",
      "owner_authorization.ref": "auth-ref",
      "owner_authorization.valid_until": "auth-until",
      grant_id: "grant-choice",
    },
  };

  const GRANT_REFUSALS = new Set([
    "grant_unknown",
    "grant_revoked",
    "grant_expired",
    "grant_exhausted",
  ]);

  /** A refused grant: the choices are loaded again (the message and the mark stay). */
  async function refusedGrant(result) {
    const code = result.problem && result.problem.code;
    if (!GRANT_REFUSALS.has(code) || !grantsUi) return;
    const refused = $("grant-choice").value;
    await grantsUi.loadGrants({ quiet: true }); // renders the choices again
    if ($("grant-choice").value !== refused) markFields({}); // the refused grant is gone
  }

  /** One query: a gateway-issued attestation for THIS query, then the lookup with it. */
  async function query(vin, declaration, vehicleTypeId) {
    const ctx = { ...LOOKUP_CTX_BASE, vin };
    const issued = await api("POST", "v1/attestations", { json: { vin, ...declaration } });
    if (!issued.ok) {
      showProblem(issued, ctx);
      await refusedGrant(issued);
      return;
    }
    const body = { vin };
    if (vehicleTypeId) body.vehicle_type_id = vehicleTypeId;
    const result = await api("POST", "v1/lookups", {
      json: body,
      headers: { "VIN-Attestation": issued.data.attestation },
    });
    if (!result.ok) {
      showProblem(result, ctx);
      await refusedGrant(result);
      return;
    }
    clearFields();
    lastQuery = { vin, declaration };
    lastResult = result.data;
    $("parts-filter").value = "";
    renderResult(result.data);
    addHistory(result.data.vehicle);
    say("lookup.found", { n: result.data.parts.length });
  }

  async function lookUp(event) {
    event.preventDefault();
    await withBusy($("lookup-button"), async () => {
      clearMessages();
      clearFields();
      const vin = normalizeVin($("vin").value);
      if (!vin) {
        simpleAlert("lookup.enterVinTitle", "lookup.enterVinAction");
        markFields({ vin: { key: "fieldError.required" } });
        $("vin").focus();
        return;
      }
      $("vin").value = vin;
      const declaration = readDeclaration();
      if (declaration === null) return;
      if (declaration.neither) {
        // terms 6.4: no basis, no query. Nothing is sent, not even to ask.
        simpleAlert("decl.neitherTitle", "decl.neitherWhy", null, () =>
          el(
            "div",
            {},
            el("p", {}, t("decl.neitherNothingSent")),
            el("p", {}, t("decl.neitherWhatToDo")),
          ),
        );
        return;
      }
      const local = localVinProblems(vin);
      if (local.length) {
        // never sent: a VIN that cannot exist is refused here, as the gateway would
        showProblem(
          { status: 422, problem: { code: "invalid_vin", errors: local } },
          { ...LOOKUP_CTX_BASE, vin },
        );
        $("vin").focus();
        return;
      }
      $("results").hidden = true; // never show parts of another VIN next to this one
      lastQuery = null;
      lastResult = null;
      say("lookup.running");
      await query(vin, declaration, null);
    });
  }

  async function chooseAlternative(button, typeId) {
    if (lastQuery === null) return;
    await withBusy(button, async () => {
      clearMessages();
      say("lookup.runningType");
      await query(lastQuery.vin, lastQuery.declaration, typeId);
    });
  }

  // --- the result -------------------------------------------------------------------------------

  function fact(dl, term, value, attrs) {
    if (value === null || value === undefined || value === "") return;
    dl.append(el("dt", {}, term), el("dd", attrs || {}, value));
  }

  function typeLabel(vt) {
    const years = vt.years || {};
    const span = years.from || years.to ? ` (${years.from || "…"}–${years.to || "…"})` : "";
    const extra = [vt.body, vt.engine, vt.market].filter(Boolean).join(", ");
    return `${vt.make} ${vt.model}${span}${extra ? " · " + extra : ""}`;
  }

  /** A category's name in ``lang`` (the current language when omitted). */
  function categoryName(id, lang) {
    const key = `category.${id}`;
    const name = lang ? I18N.textIn(lang, key) : I18N.has(key) ? t(key) : null;
    return name || id.charAt(0).toUpperCase() + id.slice(1);
  }

  function checkDigitFacts(cd) {
    if (!cd) return null;
    let verdict;
    let cls = "verdict";
    if (cd.valid === true) {
      verdict = t(cd.required ? "check.validRequired" : "check.validOptional", { found: cd.found });
      cls += " ok";
    } else if (cd.valid === false) {
      verdict = t(cd.required ? "check.invalidRequired" : "check.invalidOptional", {
        found: cd.found,
        expected: cd.expected,
      });
      cls += " warn";
    } else {
      verdict = t("check.notChecked");
    }
    return el("span", { class: cls, id: "check-digit" }, verdict);
  }

  function modelYearFacts(v) {
    const candidates = v.model_year_candidates || [];
    if (v.model_year === null || v.model_year === undefined) {
      return candidates.length
        ? t("year.candidates", { years: candidates.join(", ") })
        : t("year.none");
    }
    const others = candidates.filter((y) => y !== v.model_year);
    if (!others.length) return String(v.model_year);
    return el(
      "span",
      { id: "model-year" },
      el("span", {}, t("year.likely", { year: v.model_year })),
      el("span", { class: "also" }, t("year.also", { years: others.join(", ") })),
    );
  }

  function renderVehicle(v) {
    const dl = $("vehicle");
    dl.replaceChildren();
    fact(dl, t("vehicle.vin"), v.vin, { class: "mono" });
    fact(
      dl,
      t("vehicle.make"),
      v.make ||
        ((v.make_candidates || []).length
          ? t("vehicle.makeCandidates", { makes: v.make_candidates.join(" / ") })
          : t("vehicle.unknown")),
    );
    fact(dl, t("vehicle.modelYear"), modelYearFacts(v));
    const country = I18N.country(v.country_code, v.country);
    fact(
      dl,
      t("vehicle.country"),
      country ? country + (v.country_code ? ` (${v.country_code})` : "") : null,
    );
    fact(dl, t("vehicle.manufacturer"), v.manufacturer);
    fact(dl, t("vehicle.plant"), v.plant_code);
    fact(dl, t("vehicle.checkDigit"), checkDigitFacts(v.check_digit));
  }

  function renderTypes(data) {
    const typeBox = $("vehicle-type");
    if (data.vehicle_type) {
      typeBox.replaceChildren(
        el("p", { class: "type", id: "matched-type" }, typeLabel(data.vehicle_type)),
      );
    } else {
      typeBox.replaceChildren(
        el("p", {}, t("result.noType")),
        data.reason
          ? el("p", { class: "hint" }, t("result.reason", { reason: data.reason }))
          : null,
      );
    }
    const alternatives = data.alternatives || [];
    $("alternatives-box").hidden = alternatives.length === 0;
    const all = data.vehicle_type ? [data.vehicle_type, ...alternatives] : alternatives;
    $("alternatives").replaceChildren(
      ...all.map((vt, i) => {
        const current = data.vehicle_type && i === 0;
        const labelId = `type-${i}`;
        let control;
        if (current) {
          control = el("span", { class: "tag current" }, t("result.shown"));
        } else {
          control = el(
            "button",
            { type: "button", class: "alternative", "aria-describedby": labelId },
            t("result.showThis"),
          );
          control.addEventListener("click", () => chooseAlternative(control, vt.id));
        }
        return el(
          "li",
          { class: current ? "current" : null },
          el("span", { class: "type-label", id: labelId }, typeLabel(vt)),
          control,
        );
      }),
    );
  }

  function compact(s) {
    return s.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "");
  }

  function renderParts(data) {
    const parts = data.parts || [];
    const groups = new Map();
    for (const p of parts) {
      if (!groups.has(p.category)) groups.set(p.category, []);
      groups.get(p.category).push(p);
    }
    const container = $("parts");
    const links = $("category-links");
    container.replaceChildren();
    links.replaceChildren();
    $("category-nav").hidden = groups.size < 2;
    $("parts-card").querySelector(".parts-tools").hidden = parts.length === 0;
    if (parts.length === 0) container.append(el("p", {}, t("result.noParts")));
    for (const [category, items] of groups) {
      const name = categoryName(category);
      const sectionId = "cat-" + category.replace(/[^a-z0-9_-]/gi, "_");
      const rows = items.map((p) => {
        const haystack = [
          p.name,
          p.brand,
          p.part_number,
          p.fits_note || "",
          category,
          name,
          categoryName(category, "en"),
        ]
          .join(" ")
          .toLowerCase();
        return el(
          "tr",
          { "data-search": haystack, "data-compact": compact(haystack) },
          el("td", {}, p.name),
          el("td", {}, p.brand),
          el("td", { class: "pn" }, p.part_number),
          el("td", {}, p.fits_note || ""),
          el("td", {}, p.sample ? el("span", { class: "tag" }, t("result.sampleTag")) : ""),
        );
      });
      const heading = el(
        "h4",
        { id: sectionId + "-title", tabindex: "-1" },
        name,
        " ",
        el("span", { class: "count" }),
      );
      container.append(
        el(
          "section",
          {
            class: "category",
            id: sectionId,
            "aria-labelledby": sectionId + "-title",
            "data-total": String(items.length),
          },
          heading,
          el(
            "table",
            {},
            el("caption", { class: "sr-only" }, name),
            el(
              "thead",
              {},
              el(
                "tr",
                {},
                el("th", { scope: "col" }, t("parts.name")),
                el("th", { scope: "col" }, t("parts.brand")),
                el("th", { scope: "col" }, t("parts.number")),
                el("th", { scope: "col" }, t("parts.note")),
                el("th", { scope: "col" }, el("span", { class: "sr-only" }, t("parts.data"))),
              ),
            ),
            el("tbody", {}, ...rows),
          ),
        ),
      );
      const link = el(
        "a",
        { href: "#" + sectionId, "data-target": sectionId },
        name,
        " ",
        el("span", { class: "count" }),
      );
      link.addEventListener("click", (event) => {
        event.preventDefault(); // no fragment in the address: scroll and focus instead
        const section = $(sectionId);
        section.scrollIntoView({ block: "start" });
        $(sectionId + "-title").focus({ preventScroll: true });
      });
      links.append(el("li", { "data-target": sectionId }, link));
    }
    container.append(el("p", { id: "no-match", class: "hint", hidden: true }, t("filter.none")));
    applyFilter();
  }

  /** Show only the parts whose name, brand, part number, note or category match every word. */
  function applyFilter() {
    const queryText = $("parts-filter").value.trim().toLowerCase();
    const terms = queryText.split(/\s+/).filter(Boolean);
    let shown = 0;
    let total = 0;
    for (const section of $("parts").querySelectorAll("section.category")) {
      let visible = 0;
      const rows = section.querySelectorAll("tbody tr");
      for (const row of rows) {
        const match = terms.every(
          (term) =>
            row.dataset.search.includes(term) ||
            (compact(term) && row.dataset.compact.includes(compact(term))),
        );
        row.hidden = !match;
        if (match) visible += 1;
      }
      total += rows.length;
      shown += visible;
      section.hidden = visible === 0;
      const count = terms.length
        ? t("filter.countOf", { shown: visible, total: rows.length })
        : `(${rows.length})`;
      section.querySelector("h4 .count").textContent = count;
      const li = $("category-links").querySelector(`li[data-target="${section.id}"]`);
      if (li) {
        li.hidden = visible === 0;
        li.querySelector(".count").textContent = terms.length ? `(${visible})` : `(${rows.length})`;
      }
    }
    $("parts-count").textContent = terms.length
      ? t("filter.countOf", { shown, total })
      : `(${total})`;
    const none = $("no-match");
    if (none) none.hidden = !(terms.length && shown === 0 && total > 0);
    $("filter-status").textContent = terms.length ? t("filter.status", { n: shown, total }) : "";
  }

  function renderResult(data) {
    renderVehicle(data.vehicle);
    renderTypes(data);
    const parts = data.parts || [];
    const isSample =
      parts.some((p) => p.sample) || Boolean(data.vehicle_type && data.vehicle_type.sample);
    $("sample-banner").hidden = !isSample;
    renderParts(data);
    $("results").hidden = false;
  }

  // --- the search history on this device (terms 2.2 B) -------------------------------------------

  function historyKey() {
    return account ? HISTORY_PREFIX + account.id : null;
  }

  /** {enabled, entries: [{vin, make, model_year, at}]}, pruned to the bounds. */
  function readHistory() {
    const key = historyKey();
    let stored = null;
    try {
      stored = key ? JSON.parse(window.localStorage.getItem(key) || "null") : null;
    } catch {
      stored = null;
    }
    const enabled = !(stored && stored.enabled === false);
    const oldest = Date.now() - HISTORY_DAYS * 86400 * 1000;
    const entries = (stored && Array.isArray(stored.entries) ? stored.entries : [])
      .filter((e) => e && typeof e.vin === "string" && Number.isFinite(e.at) && e.at >= oldest)
      .slice(0, HISTORY_MAX);
    return { enabled, entries: enabled ? entries : [] };
  }

  function writeHistory(history) {
    const key = historyKey();
    if (!key) return;
    try {
      if (history.enabled && history.entries.length === 0) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, JSON.stringify(history));
    } catch {
      // storage full or disabled: no history, the lookup itself is unaffected
    }
  }

  function addHistory(vehicle) {
    const history = readHistory();
    if (!history.enabled || !vehicle || !vehicle.vin) return;
    const make = vehicle.make || (vehicle.make_candidates || []).join(" / ") || null;
    const entry = {
      vin: vehicle.vin,
      make,
      model_year: vehicle.model_year ?? null,
      at: Date.now(),
    };
    history.entries = [entry, ...history.entries.filter((e) => e.vin !== vehicle.vin)].slice(
      0,
      HISTORY_MAX,
    );
    writeHistory(history);
    renderHistory();
  }

  function renderHistory() {
    const history = readHistory();
    writeHistory(history); // drops what is past the bounds
    $("history-enabled").checked = history.enabled;
    $("history-hint").textContent = t("history.hint", { max: HISTORY_MAX, days: HISTORY_DAYS });
    $("history-empty").hidden = history.entries.length > 0;
    $("history-empty").textContent = history.enabled ? t("history.empty") : t("history.off");
    $("history-clear").hidden = history.entries.length === 0;
    $("history-list").replaceChildren(
      ...history.entries.map((e, i) => {
        const vinId = `history-vin-${i}`;
        const rerun = el(
          "button",
          { type: "button", class: "rerun", "aria-describedby": vinId },
          t("history.rerun"),
        );
        rerun.addEventListener("click", () => rerunHistory(e.vin));
        const remove = el(
          "button",
          { type: "button", class: "link remove", "aria-describedby": vinId },
          t("history.delete"),
        );
        remove.addEventListener("click", () => deleteHistory(e.vin, i));
        const facts = [e.make || t("vehicle.unknown"), e.model_year ? String(e.model_year) : null]
          .filter(Boolean)
          .join(" · ");
        return el(
          "li",
          {},
          el("span", { class: "mono history-vin", id: vinId }, e.vin),
          el("span", { class: "history-facts" }, facts),
          el(
            "time",
            { datetime: new Date(e.at).toISOString(), class: "hint" },
            I18N.dateTime(e.at),
          ),
          el("span", { class: "history-actions" }, rerun, remove),
        );
      }),
    );
  }

  /** Put a VIN of the history back in the form; the user makes a NEW declaration for it. */
  function rerunHistory(vin) {
    clearMessages();
    clearFields();
    $("vin").value = vin;
    for (const radio of document.querySelectorAll("input[name=basis]")) radio.checked = false;
    $("auth-ref").value = "";
    $("auth-until").value = "";
    syncDeclaration();
    say("history.rerunStatus");
    $("basis-owner").focus();
  }

  function deleteHistory(vin, index) {
    const history = readHistory();
    history.entries = history.entries.filter((e) => e.vin !== vin);
    writeHistory(history);
    renderHistory();
    say("history.deleted");
    const buttons = $("history-list").querySelectorAll("button.rerun");
    if (buttons.length) buttons[Math.min(index, buttons.length - 1)].focus();
    else $("history-enabled").focus();
  }

  function clearHistory() {
    const history = readHistory();
    writeHistory({ enabled: history.enabled, entries: [] });
    renderHistory();
    say("history.cleared");
    $("history-enabled").focus();
  }

  function toggleHistory() {
    const enabled = $("history-enabled").checked;
    writeHistory({ enabled, entries: enabled ? readHistory().entries : [] });
    renderHistory();
    say(enabled ? "history.turnedOn" : "history.turnedOff");
  }

  // --- my data ----------------------------------------------------------------------------------

  function renderAccount() {
    const dl = $("account");
    dl.replaceChildren();
    if (!account) return;
    fact(dl, t("field.email"), account.email);
    fact(dl, t("field.company"), account.company);
    fact(dl, t("data.created"), I18N.dateTime(account.created_at));
    if (account.role === "admin") fact(dl, t("data.role"), t("data.roleAdmin"));
    if (account.workshop_code)
      fact(dl, t("workshop.ownCode"), account.workshop_code, { class: "mono" });
    const current = policy && account.consent_version === policy.version;
    fact(
      dl,
      t("data.consent"),
      account.consent_version
        ? t(current || !policy ? "data.consentGiven" : "data.consentStale", {
            version: account.consent_version,
          })
        : t("data.consentWithdrawn"),
    );
    $("consent-withdraw").hidden = !account.consent_version;
    $("consent-accept").hidden = Boolean(current);
    if (policy) $("consent-accept").textContent = t("data.accept", { version: policy.version });
  }

  async function openData() {
    clearMessages();
    clearFields();
    show("data");
    if (policy === null) await loadPolicy();
    const me = await api("GET", "v1/me");
    if (me.ok) {
      account = me.data;
      renderAccount();
    } else if (token !== null) {
      showProblem(me, {});
    }
  }

  async function exportData(event) {
    await withBusy(event.currentTarget, async () => {
      clearMessages();
      const result = await api("GET", "v1/me/export");
      if (!result.ok) {
        showProblem(result, {});
        return;
      }
      download(`vin-gateway-my-data-${todayIso()}.json`, result.data);
      say("data.exported");
    });
  }

  async function withdrawConsent(event) {
    await withBusy(event.currentTarget, async () => {
      clearMessages();
      const result = await api("DELETE", "v1/me/consent");
      if (!result.ok) {
        showProblem(result, {});
        return;
      }
      account = result.data;
      renderAccount();
      say("data.withdrawn");
    });
  }

  async function acceptConsent(event) {
    await withBusy(event.currentTarget, async () => {
      clearMessages();
      if (policy === null) await loadPolicy();
      if (policy === null) return;
      const result = await api("POST", "v1/me/consent", {
        json: { privacy_policy_version: policy.version },
      });
      if (!result.ok) {
        showProblem(result, {});
        return;
      }
      account = result.data;
      renderAccount();
      say("data.accepted", { version: policy.version });
    });
  }

  async function deleteAccount(event) {
    await withBusy(event.currentTarget, async () => {
      clearMessages();
      const result = await api("DELETE", "v1/me");
      if (!result.ok) {
        showProblem(result, {});
        return;
      }
      const key = historyKey();
      if (key) window.localStorage.removeItem(key); // the history of an erased account goes too
      if (grantsUi) grantsUi.forgetDevice(); // and the VINs of its vehicles
      logOut("data.deleted");
    });
  }

  // --- the operators' console -------------------------------------------------------------------

  async function openConsole() {
    clearMessages();
    clearFields();
    show("console");
    if (admin === null) {
      admin = window.VinGwAdmin.create({
        $,
        api,
        el,
        t,
        I18N,
        alertWith,
        clearFields,
        clearMessages,
        download,
        markFields,
        say,
        showProblem,
        simpleAlert,
        todayIso,
        withBusy,
      });
    }
    await admin.open();
  }

  // --- language ---------------------------------------------------------------------------------

  function applyLanguage() {
    I18N.apply(document);
    document.title = t("title");
    $("auth-until").setAttribute("lang", I18N.lang);
    renderPolicyInfo();
    renderAlert();
    if (countdown) tickCountdown();
    renderStatus();
    renderFieldErrors();
    if (lastResult) renderResult(lastResult);
    if (account) {
      renderHistory();
      renderAccount();
    }
    if (admin) admin.rerender();
    if (grantsUi) grantsUi.rerender();
    renderGrantChoice();
  }

  // --- wiring -----------------------------------------------------------------------------------

  function wire() {
    $("login-form").addEventListener("submit", logIn);
    $("register-form").addEventListener("submit", register);
    $("lookup-form").addEventListener("submit", lookUp);
    $("to-register").addEventListener("click", () => {
      clearMessages();
      clearFields();
      show("register");
      if (policy === null) loadPolicy();
    });
    $("to-login").addEventListener("click", () => {
      clearMessages();
      clearFields();
      show("login");
    });
    for (const radio of document.querySelectorAll("input[name=basis]")) {
      radio.addEventListener("change", syncDeclaration);
    }
    $("basis-granted").addEventListener("change", chooseGranted);
    $("grant-choice").addEventListener("change", syncGrantChoice);
    $("grant-to-workshop-screen").addEventListener("click", () => grantsUi.openWorkshop());
    $("auth-until").min = todayIso();
    $("nav-lookup").addEventListener("click", () => {
      clearMessages();
      clearFields();
      show("lookup");
    });
    $("nav-vehicles").addEventListener("click", () => grantsUi.openVehicles());
    $("nav-grants").addEventListener("click", () => grantsUi.openGrants());
    $("nav-workshop").addEventListener("click", () => grantsUi.openWorkshop());
    $("nav-data").addEventListener("click", openData);
    $("nav-console").addEventListener("click", openConsole);
    $("logout").addEventListener("click", () => logOut());
    $("export").addEventListener("click", exportData);
    $("consent-withdraw").addEventListener("click", withdrawConsent);
    $("consent-accept").addEventListener("click", acceptConsent);
    $("delete-start").addEventListener("click", () => {
      $("delete-confirm").hidden = false;
      $("delete-no").focus();
    });
    $("delete-no").addEventListener("click", () => {
      $("delete-confirm").hidden = true;
      $("delete-start").focus();
    });
    $("delete-yes").addEventListener("click", deleteAccount);
    $("parts-filter").addEventListener("input", applyFilter);
    for (const form of document.querySelectorAll("form")) {
      form.addEventListener("input", unmarkOnEdit);
      form.addEventListener("change", unmarkOnEdit);
    }
    $("print").addEventListener("click", () => window.print());
    $("history-enabled").addEventListener("change", toggleHistory);
    $("history-clear").addEventListener("click", clearHistory);
    for (const button of document.querySelectorAll("[data-lang]")) {
      button.addEventListener("click", async () => {
        try {
          await I18N.load([button.dataset.lang]);
        } catch {
          return; // keep the language shown
        }
        I18N.use(button.dataset.lang, { remember: true });
        applyLanguage();
      });
    }
    document.querySelector(".skip").addEventListener("click", (event) => {
      event.preventDefault(); // no fragment in the address
      $("main").focus();
    });
  }

  async function init() {
    grantsUi = window.VinGwGrants.create({
      $,
      api,
      el,
      t,
      I18N,
      account: () => account,
      setAccount: (me) => {
        account = me;
      },
      alertWith,
      clearFields,
      clearMessages,
      formatDuration,
      localVinProblems,
      markFields,
      normalizeVin,
      say,
      show,
      showProblem,
      simpleAlert,
      todayIso,
      useGrant,
      withBusy,
      grantsChanged: () => renderGrantChoice(),
    });
    wire();
    resetLookup(); // a VIN the browser may restore into the form after a reload is dropped
    I18N.use(I18N.preferred());
    try {
      await I18N.load([...new Set(["en", I18N.lang])]);
    } catch {
      $("load-error").hidden = false;
      document.body.classList.remove("loading");
      return;
    }
    applyLanguage();
    show("login", { focus: false });
    document.body.classList.remove("loading");
    document.documentElement.dataset.ready = "true";
    I18N.load(I18N.LANGUAGES).catch(() => {}); // the other language, for a switch later
    loadPolicy();
  }

  init();
})();
