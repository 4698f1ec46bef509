/* The catalogue web frontend of vin-gateway: plain JavaScript, no build step, no third party.
 *
 * Privacy rules this file keeps (a VIN is personal information under PIPL):
 * - the VIN travels only in POST bodies; it is never put in a URL, a fragment or the history;
 * - nothing is written to localStorage, sessionStorage or cookies: the access token and the last
 *   query live in the variables below and are gone when the tab is closed or on log out;
 * - nothing is written to the console;
 * - every request goes to this gateway (relative URLs; the CSP allows nothing else).
 */
"use strict";

(() => {
  let token = null; // the bearer access token, in memory only
  let policy = null; // {version, effective_date, text_url} of the policy in force
  let account = null; // GET /v1/me
  let lastQuery = null; // {vin, declaration} of the result shown, to ask again for an alternative
  let busy = false;

  const SCREENS = ["login", "register", "lookup", "data"];
  const $ = (id) => document.getElementById(id);

  /** A DOM element with attributes and text/element children (never innerHTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
    }
    return node;
  }

  // --- screens and messages -------------------------------------------------------------------

  function show(name, { focus = true } = {}) {
    for (const s of SCREENS) $("screen-" + s).hidden = s !== name;
    $("nav").hidden = token === null;
    $("nav-lookup").setAttribute("aria-current", name === "lookup" ? "page" : "false");
    $("nav-data").setAttribute("aria-current", name === "data" ? "page" : "false");
    if (focus) {
      const heading = $("screen-" + name).querySelector("h1");
      if (heading) heading.focus();
    }
  }

  function clearMessages() {
    $("alert").replaceChildren();
    $("status").textContent = "";
  }

  function say(text) {
    $("alert").replaceChildren();
    $("status").textContent = text;
  }

  function retryText(retryAfter) {
    if (!retryAfter) return null;
    const seconds = /^\d+$/.test(retryAfter)
      ? Number(retryAfter)
      : Math.max(0, Math.ceil((Date.parse(retryAfter) - Date.now()) / 1000));
    if (!Number.isFinite(seconds)) return null;
    const unit = seconds === 1 ? "second" : "seconds";
    return `Try again in ${seconds} ${unit} (Retry-After: ${retryAfter}).`;
  }

  /** The VIN with the characters at the given 1-based positions marked. */
  function markedVin(vin, positions) {
    const line = el("p", { class: "vin-marked", "aria-hidden": "true" });
    [...vin].forEach((ch, i) => {
      const pos = i + 1;
      line.append(
        positions.has(pos) ? el("mark", { title: `position ${pos}` }, ch) : el("span", {}, ch),
      );
    });
    return line;
  }

  /** Render an RFC 9457 problem (title, detail, errors with positions, Retry-After). */
  function showProblem(result, vin) {
    const problem = result.problem || {};
    const box = $("alert");
    $("status").textContent = "";
    const children = [el("strong", {}, problem.title || "The request failed")];
    if (problem.detail && problem.detail !== problem.title) {
      children.push(el("p", {}, problem.detail));
    }
    const errors = Array.isArray(problem.errors) ? problem.errors : [];
    if (errors.length) {
      const positions = new Set(errors.map((e) => e.position).filter(Number.isInteger));
      if (vin && positions.size) children.push(markedVin(vin, positions));
      children.push(
        el(
          "ul",
          { class: "errors" },
          ...errors.map((e) => {
            const where = Number.isInteger(e.position)
              ? `Position ${e.position}: `
              : e.field
                ? `${e.field}: `
                : "";
            const message = String(e.message || e.code || "invalid")
              .replace(/^position \d+:\s*/i, "");
            return el("li", {}, where + message);
          }),
        ),
      );
    }
    const requirements = Array.isArray(problem.requirements) ? problem.requirements : [];
    if (requirements.some((r) => !String(problem.detail || "").includes(String(r)))) {
      children.push(
        el("p", {}, "Requirements:"),
        el("ul", {}, ...requirements.map((r) => el("li", {}, String(r)))),
      );
    }
    if (result.status === 429 || result.retryAfter) {
      const retry = retryText(result.retryAfter) || "Try again later.";
      children.push(el("p", { class: "retry" }, retry));
    }
    if (typeof problem.code === "string" && problem.code.startsWith("consent")) {
      children.push(el("p", {}, "Accept the privacy policy in force under “My data”."));
    }
    box.replaceChildren(...children);
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
      return {
        ok: false,
        status: 0,
        problem: { title: "The gateway could not be reached", detail: "Check the connection." },
      };
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
      problem: data || { title: response.statusText || `HTTP ${response.status}` },
      retryAfter: response.headers.get("Retry-After"),
    };
    if (response.status === 401 && token !== null) {
      logOut("Your session has ended. Please log in again.");
    }
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

  // --- registration and log in ------------------------------------------------------------------

  async function loadPolicy() {
    const result = await api("GET", "v1/privacy-policy");
    if (!result.ok) {
      $("policy-info").textContent = "The privacy policy could not be loaded.";
      return;
    }
    policy = result.data;
    const link = el("a", { href: policy.text_url, rel: "noreferrer" }, "privacy policy");
    $("policy-info").replaceChildren(
      "The ",
      link,
      " in force is version ",
      el("strong", { id: "policy-version" }, policy.version),
      `, effective ${policy.effective_date}.`,
    );
    $("policy-version-label").textContent = `(version ${policy.version})`;
  }

  async function register(event) {
    event.preventDefault();
    const form = event.currentTarget;
    await withBusy(form.querySelector("button[type=submit]"), async () => {
      clearMessages();
      if (policy === null) await loadPolicy();
      if (policy === null) return;
      const email = $("reg-email").value.trim();
      const password = $("reg-password").value;
      if (!email || !password) {
        showProblem({ problem: { title: "Enter an email and a password" } });
        return;
      }
      if (!$("reg-accept").checked) {
        showProblem({ problem: { title: "Accept the privacy policy to create an account" } });
        $("reg-accept").focus();
        return;
      }
      const body = { email, password, privacy_policy_version: policy.version };
      const company = $("reg-company").value.trim();
      if (company) body.company = company;
      const result = await api("POST", "v1/accounts", { json: body });
      if (!result.ok) {
        showProblem(result);
        return;
      }
      form.reset();
      $("login-email").value = email;
      show("login");
      say("Account created. Log in with your email and password.");
      $("login-password").focus();
    });
  }

  async function logIn(event) {
    event.preventDefault();
    const form = event.currentTarget;
    await withBusy(form.querySelector("button[type=submit]"), async () => {
      clearMessages();
      const username = $("login-email").value.trim();
      const password = $("login-password").value;
      if (!username || !password) {
        showProblem({ problem: { title: "Enter your email and password" } });
        return;
      }
      const result = await api("POST", "v1/auth/token", { form: { username, password } });
      if (!result.ok) {
        showProblem(result);
        return;
      }
      token = result.data.access_token;
      form.reset();
      const me = await api("GET", "v1/me");
      account = me.ok ? me.data : null;
      $("who").textContent = account ? account.email : "";
      show("lookup");
      say("Logged in.");
    });
  }

  function resetLookup() {
    $("lookup-form").reset();
    $("authorization").hidden = true;
    $("results").hidden = true;
    for (const id of ["vehicle", "vehicle-type", "alternatives", "parts"]) $(id).replaceChildren();
    lastQuery = null;
  }

  function logOut(message) {
    token = null;
    account = null;
    resetLookup();
    $("account").replaceChildren();
    $("delete-confirm").hidden = true;
    $("who").textContent = "";
    show("login");
    say(message || "Logged out.");
  }

  // --- the lookup -------------------------------------------------------------------------------

  function normalizeVin(raw) {
    return raw.replace(/[\s-]+/g, "").toUpperCase();
  }

  function todayIso() {
    const d = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  /** The user's declaration from the form, or null (with the problem shown). */
  function readDeclaration() {
    const chosen = document.querySelector("input[name=basis]:checked");
    if (!chosen) {
      showProblem({
        problem: {
          title: "Choose your declaration",
          detail: "Say whether you own the vehicle or hold the owner's authorization.",
        },
      });
      $("basis-owner").focus();
      return null;
    }
    const declaration = { basis: chosen.value, purpose: $("purpose").value };
    if (chosen.value === "owner_authorized") {
      const ref = $("auth-ref").value.trim();
      const until = $("auth-until").value; // YYYY-MM-DD
      const missing = [];
      if (!ref) {
        const message = "enter the work order or authorization reference";
        missing.push({ field: "Reference", message });
      }
      if (!/^\d{4}-\d{2}-\d{2}$/.test(until)) {
        missing.push({ field: "Valid until", message: "enter the date the authorization ends" });
      }
      if (missing.length) {
        showProblem({ problem: { title: "Complete the owner's authorization", errors: missing } });
        (ref ? $("auth-until") : $("auth-ref")).focus();
        return null;
      }
      const [y, m, d] = until.split("-").map(Number);
      const validUntil = Math.floor(new Date(y, m - 1, d, 23, 59, 59).getTime() / 1000);
      if (validUntil < Date.now() / 1000) {
        showProblem({ problem: { title: "The owner's authorization has expired" } });
        $("auth-until").focus();
        return null;
      }
      declaration.owner_authorization = { ref, valid_until: validUntil };
    }
    return declaration;
  }

  function markVin(result) {
    const invalid = Boolean(result.problem && result.problem.code === "invalid_vin");
    $("vin").setAttribute("aria-invalid", invalid ? "true" : "false");
  }

  /** One query: a gateway-issued attestation for THIS query, then the lookup with it. */
  async function query(vin, declaration, vehicleTypeId) {
    const issued = await api("POST", "v1/attestations", { json: { vin, ...declaration } });
    if (!issued.ok) {
      // the gateway refuses to attest an invalid VIN: mark the field as the lookup would
      markVin(issued);
      showProblem(issued, vin);
      return;
    }
    const body = { vin };
    if (vehicleTypeId) body.vehicle_type_id = vehicleTypeId;
    const result = await api("POST", "v1/lookups", {
      json: body,
      headers: { "VIN-Attestation": issued.data.attestation },
    });
    if (!result.ok) {
      markVin(result);
      showProblem(result, vin);
      return;
    }
    $("vin").setAttribute("aria-invalid", "false");
    lastQuery = { vin, declaration };
    renderResult(result.data);
    const parts = result.data.parts.length;
    say(`Found ${parts} part${parts === 1 ? "" : "s"}.`);
  }

  async function lookUp(event) {
    event.preventDefault();
    await withBusy($("lookup-button"), async () => {
      clearMessages();
      const vin = normalizeVin($("vin").value);
      if (!vin) {
        showProblem({ problem: { title: "Enter a VIN" } });
        $("vin").focus();
        return;
      }
      $("vin").value = vin;
      const declaration = readDeclaration();
      if (declaration === null) return;
      $("results").hidden = true; // never show parts of another VIN next to this one
      lastQuery = null;
      say("Looking up…");
      await query(vin, declaration, null);
    });
  }

  async function chooseAlternative(button, typeId) {
    if (lastQuery === null) return;
    await withBusy(button, async () => {
      clearMessages();
      say("Looking up the chosen vehicle type…");
      await query(lastQuery.vin, lastQuery.declaration, typeId);
    });
  }

  function fact(dl, term, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(el("dt", {}, term), el("dd", {}, String(value)));
  }

  function typeLabel(t) {
    const years = t.years || {};
    const span = years.from || years.to ? ` (${years.from || "…"}–${years.to || "…"})` : "";
    const extra = [t.body, t.engine, t.market].filter(Boolean).join(", ");
    return `${t.make} ${t.model}${span}${extra ? " · " + extra : ""}`;
  }

  function renderResult(data) {
    const v = data.vehicle;
    const dl = $("vehicle");
    dl.replaceChildren();
    fact(dl, "VIN", v.vin);
    fact(dl, "Make", v.make || (v.make_candidates || []).join(" or ") || "unknown");
    fact(
      dl,
      "Model year",
      v.model_year ?? ((v.model_year_candidates || []).join(" or ") || "not encoded"),
    );
    const code = v.country_code ? ` (${v.country_code})` : "";
    fact(dl, "Country", v.country ? v.country + code : null);
    fact(dl, "Manufacturer", v.manufacturer);
    fact(dl, "Plant code", v.plant_code);

    const typeBox = $("vehicle-type");
    if (data.vehicle_type) {
      const label = typeLabel(data.vehicle_type);
      typeBox.replaceChildren(el("p", { class: "type", id: "matched-type" }, label));
    } else {
      typeBox.replaceChildren(
        el("p", {}, "No vehicle type in the catalogue matches this VIN."),
        data.reason ? el("p", { class: "hint" }, `Reason: ${data.reason}`) : null,
      );
    }
    const alternatives = data.alternatives || [];
    $("alternatives-box").hidden = alternatives.length === 0;
    $("alternatives").replaceChildren(
      ...alternatives.map((t) => {
        const button = el("button", { type: "button", class: "alternative" }, typeLabel(t));
        button.addEventListener("click", () => chooseAlternative(button, t.id));
        return el("li", {}, button);
      }),
    );

    const parts = data.parts || [];
    const isSample =
      parts.some((p) => p.sample) || Boolean(data.vehicle_type && data.vehicle_type.sample);
    $("sample-banner").hidden = !isSample;
    $("parts-count").textContent = `(${parts.length})`;
    const groups = new Map();
    for (const p of parts) {
      if (!groups.has(p.category)) groups.set(p.category, []);
      groups.get(p.category).push(p);
    }
    const container = $("parts");
    container.replaceChildren();
    if (parts.length === 0) container.append(el("p", {}, "No parts listed."));
    for (const [category, items] of groups) {
      const title = category.charAt(0).toUpperCase() + category.slice(1);
      const rows = items.map((p) =>
        el(
          "tr",
          {},
          el("td", {}, p.name),
          el("td", {}, p.brand),
          el("td", { class: "pn" }, p.part_number),
          el("td", {}, p.fits_note || ""),
          el("td", {}, p.sample ? el("span", { class: "tag" }, "sample") : ""),
        ),
      );
      container.append(
        el(
          "section",
          { class: "category" },
          el("h4", {}, `${title} (${items.length})`),
          el(
            "table",
            {},
            el(
              "thead",
              {},
              el(
                "tr",
                {},
                el("th", { scope: "col" }, "Part"),
                el("th", { scope: "col" }, "Brand"),
                el("th", { scope: "col" }, "Part number"),
                el("th", { scope: "col" }, "Note"),
                el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Data")),
              ),
            ),
            el("tbody", {}, ...rows),
          ),
        ),
      );
    }
    $("results").hidden = false;
  }

  // --- my data ----------------------------------------------------------------------------------

  function renderAccount() {
    const dl = $("account");
    dl.replaceChildren();
    if (!account) return;
    fact(dl, "Email", account.email);
    fact(dl, "Company", account.company);
    const created = new Date(account.created_at);
    const createdText = Number.isNaN(created.getTime())
      ? account.created_at
      : created.toLocaleString();
    fact(dl, "Account created", createdText);
    const current = policy && account.consent_version === policy.version;
    const stale = current || !policy ? "" : " (not the one in force)";
    fact(
      dl,
      "Consent",
      account.consent_version ? `privacy policy ${account.consent_version}${stale}` : "withdrawn",
    );
    $("consent-withdraw").hidden = !account.consent_version;
    $("consent-accept").hidden = Boolean(current);
    if (policy) {
      $("consent-accept").textContent = `Accept the privacy policy (version ${policy.version})`;
    }
  }

  async function openData() {
    clearMessages();
    show("data");
    if (policy === null) await loadPolicy();
    const me = await api("GET", "v1/me");
    if (me.ok) {
      account = me.data;
      renderAccount();
    } else if (token !== null) {
      showProblem(me);
    }
  }

  async function exportData(event) {
    await withBusy(event.currentTarget, async () => {
      clearMessages();
      const result = await api("GET", "v1/me/export");
      if (!result.ok) {
        showProblem(result);
        return;
      }
      const blob = new Blob([JSON.stringify(result.data, null, 2)], { type: "application/json" });
      const url = URL.createObjectURL(blob);
      const a = el("a", { href: url, download: `vin-gateway-my-data-${todayIso()}.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      say("Your data was downloaded as a JSON file.");
    });
  }

  async function withdrawConsent(event) {
    await withBusy(event.currentTarget, async () => {
      clearMessages();
      const result = await api("DELETE", "v1/me/consent");
      if (!result.ok) {
        showProblem(result);
        return;
      }
      account = result.data;
      renderAccount();
      say("Consent withdrawn. VIN lookups are refused until you accept the policy again.");
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
        showProblem(result);
        return;
      }
      account = result.data;
      renderAccount();
      say(`You accepted the privacy policy version ${policy.version}.`);
    });
  }

  async function deleteAccount(event) {
    await withBusy(event.currentTarget, async () => {
      clearMessages();
      const result = await api("DELETE", "v1/me");
      if (!result.ok) {
        showProblem(result);
        return;
      }
      logOut("Your account and its search-log entries were deleted.");
    });
  }

  // --- wiring -----------------------------------------------------------------------------------

  function init() {
    $("login-form").addEventListener("submit", logIn);
    $("register-form").addEventListener("submit", register);
    $("lookup-form").addEventListener("submit", lookUp);
    $("to-register").addEventListener("click", () => {
      clearMessages();
      show("register");
      if (policy === null) loadPolicy();
    });
    $("to-login").addEventListener("click", () => {
      clearMessages();
      show("login");
    });
    for (const radio of document.querySelectorAll("input[name=basis]")) {
      radio.addEventListener("change", () => {
        const authorized = $("basis-authorized").checked;
        $("authorization").hidden = !authorized;
        $("auth-ref").required = authorized;
        $("auth-until").required = authorized;
      });
    }
    $("auth-until").min = todayIso();
    $("nav-lookup").addEventListener("click", () => {
      clearMessages();
      show("lookup");
    });
    $("nav-data").addEventListener("click", openData);
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
    resetLookup(); // a VIN the browser may restore into the form after a reload is dropped
    show("login", { focus: false });
    loadPolicy();
  }

  init();
})();
