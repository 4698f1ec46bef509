/* Owner-issued grants in the catalogue's page: an owner declares vehicles ("My vehicles") and
 * grants one workshop access to one of them ("Grants"), by the workshop's code or by a one-time
 * code given at the counter; a workshop redeems such a code and sees what it received
 * ("Workshop"). The lookup form (app.js) offers a received grant as a declaration.
 *
 * Privacy rules this file keeps:
 * - the clear VIN of a declared vehicle travels only in the body of POST /v1/vehicles; the
 *   gateway keeps a keyed pseudonym, never the VIN, so the VIN is kept ONLY in this browser:
 *   localStorage["vingw.vehicles.<account id>"] = {"<vehicle id>": "<VIN>"}, written when the
 *   vehicle is declared, dropped when it is deleted (or is no longer on the gateway), and with
 *   the account when it is deleted from this device;
 * - a one-time code is as sensitive as a token: it lives in the variables below only, is shown
 *   until it expires or is redeemed, and is never written to storage or a URL;
 * - the QR code the API returns is checked (an SVG with drawing elements only) and shown as an
 *   <img> of a data: URL, never inserted as markup.
 */
"use strict";

window.VinGwGrants = (() => {
  const PURPOSES = ["parts_inquiry", "maintenance"];
  const VEHICLES_PREFIX = "vingw.vehicles."; // + account id: {vehicle id: VIN}
  // Crockford's base32: digits and upper-case letters without I, L, O and U
  const CROCKFORD = [..."0123456789", ..."ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    .filter((c) => !"ILOU".includes(c)).join("");
  const ALIASES = { O: "0", I: "1", L: "1" };
  const POLL_MS = 5000; // while a one-time code is shown: has the workshop redeemed it?
  const MAX_USES = 10000;
  const MAX_DAYS = 364; // the date picker's bound (the gateway allows VINGW_GRANT_MAX_DAYS)
  const SVG_NS = "http://www.w3.org/2000/svg";
  const SVG_ELEMENTS = new Set(["svg", "g", "path", "rect", "title", "desc"]);

  // --- the QR code: a checked SVG shown as an image ---------------------------------------

  /** A data: URL of the QR code, or null when the text is not a plain drawing SVG. */
  function qrImage(svgText) {
    if (typeof svgText !== "string" || !svgText) return null;
    const doc = new DOMParser().parseFromString(svgText, "image/svg+xml");
    const root = doc.documentElement;
    if (!root || root.namespaceURI !== SVG_NS || root.localName !== "svg") return null;
    if (doc.getElementsByTagName("parsererror").length) return null;
    for (const node of [root, ...root.querySelectorAll("*")]) {
      if (node.namespaceURI !== SVG_NS || !SVG_ELEMENTS.has(node.localName)) return null;
      for (const attr of [...node.attributes]) {
        const name = attr.name.toLowerCase();
        if (name.startsWith("on") || name.endsWith("href")) return null;
        if (name === "style") node.removeAttribute(attr.name);
      }
    }
    const w = parseFloat(root.getAttribute("width"));
    const h = parseFloat(root.getAttribute("height"));
    if (!root.hasAttribute("viewBox") && w > 0 && h > 0) {
      root.setAttribute("viewBox", `0 0 ${w} ${h}`);
    }
    root.removeAttribute("width");
    root.removeAttribute("height");
    const text = new XMLSerializer().serializeToString(root);
    const bytes = new TextEncoder().encode(text);
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    return "data:image/svg+xml;base64," + btoa(binary);
  }

  function create(ctx) {
    const { $, api, el, t, I18N } = ctx;
    let vehicles = null; // GET /v1/vehicles
    let grants = null; // GET /v1/grants: {given, received}
    let shownCode = null; // {grantId, code, expiresAt (ms), qr (data: URL or null)}
    let codeTimer = null;
    let pollTimer = null;
    let openUses = new Map(); // grant id -> uses list shown (null while loading)
    let editing = null; // vehicle id being renamed
    let confirming = null; // "vehicle:<id>" or "grant:<id>" awaiting confirmation
    let wired = false;

    // --- helpers ----------------------------------------------------------------------------

    function accountId() {
      const a = ctx.account();
      return a ? a.id : null;
    }

    function time(value) {
      if (value === null || value === undefined) return null;
      const ms =
        typeof value === "number" ? (value < 1e12 ? value * 1000 : value) : Date.parse(value);
      return Number.isFinite(ms) ? ms : null;
    }

    function when(value, options) {
      const ms = time(value);
      return ms === null ? "" : I18N.dateTime(ms, options);
    }

    /** A Crockford base32 code as typed (lower case, spaces, hyphens, O/I/L) -> its characters,
     * or null when it is not ``length`` characters of the alphabet. */
    function normalizeCode(raw, length) {
      const chars = String(raw)
        .toUpperCase()
        .replace(/[\s-]+/g, "")
        .replace(/[OIL]/g, (c) => ALIASES[c]);
      if (chars.length !== length || [...chars].some((c) => !CROCKFORD.includes(c))) return null;
      return chars;
    }

    function displayCode(code) {
      const chars = String(code || "").replace(/-/g, "");
      const half = Math.ceil(chars.length / 2);
      return chars.length > 4 ? `${chars.slice(0, half)}-${chars.slice(half)}` : chars;
    }

    function purposesText(list) {
      return (list || []).map((p) => (I18N.has(`purpose.${p}`) ? t(`purpose.${p}`) : p)).join(", ");
    }

    function statusTag(status) {
      const known = I18N.has(`grantStatus.${status}`);
      return el(
        "span",
        { class: `tag status-${status}`, "data-status": status },
        known ? t(`grantStatus.${status}`) : String(status),
      );
    }

    function partyText(party) {
      if (!party) return t("grants.noWorkshopYet");
      const code = party.workshop_code ? displayCode(party.workshop_code) : "";
      return party.company ? t("grants.party", { code, company: party.company }) : code;
    }

    function usesText(g) {
      const n = g.uses === null || g.uses === undefined ? "–" : g.uses; // null: not readable now
      return g.max_uses
        ? t("grants.usesOf", { n, max: g.max_uses })
        : t("grants.usesNoLimit", { n });
    }

    function factList(pairs) {
      const dl = el("dl", { class: "facts" });
      for (const [term, value] of pairs) {
        if (value === null || value === undefined || value === "") continue;
        dl.append(el("dt", {}, term), el("dd", {}, value));
      }
      return dl;
    }

    // --- the VINs of declared vehicles, on this device only ---------------------------------

    function vinKey() {
      const id = accountId();
      return id ? VEHICLES_PREFIX + id : null;
    }

    function readVins() {
      const key = vinKey();
      try {
        const stored = key ? JSON.parse(window.localStorage.getItem(key) || "null") : null;
        return stored && typeof stored === "object" && !Array.isArray(stored) ? stored : {};
      } catch {
        return {};
      }
    }

    function writeVins(map) {
      const key = vinKey();
      if (!key) return;
      try {
        if (Object.keys(map).length) window.localStorage.setItem(key, JSON.stringify(map));
        else window.localStorage.removeItem(key);
      } catch {
        // storage full or disabled: the vehicle is declared, its VIN is just not shown here
      }
    }

    function vinOf(vehicleId) {
      const vin = readVins()[vehicleId];
      return typeof vin === "string" ? vin : null;
    }

    /** Only the vehicles the gateway still has keep their VIN on this device. */
    function pruneVins() {
      if (vehicles === null) return;
      const ids = new Set(vehicles.map((v) => v.id));
      const map = readVins();
      const kept = Object.fromEntries(Object.entries(map).filter(([id]) => ids.has(id)));
      if (Object.keys(kept).length !== Object.keys(map).length) writeVins(kept);
    }

    function vehicleName(v) {
      if (!v) return t("vehicles.unknown");
      if (v.label) return v.label;
      const vin = vinOf(v.id);
      return vin ? t("vehicles.vinName", { vin }) : t("vehicles.unnamed");
    }

    // --- loading ----------------------------------------------------------------------------

    async function loadVehicles() {
      const result = await api("GET", "v1/vehicles");
      if (!result.ok) {
        ctx.showProblem(result, {});
        return false;
      }
      vehicles = Array.isArray(result.data && result.data.vehicles) ? result.data.vehicles : [];
      pruneVins();
      return true;
    }

    async function loadGrants({ quiet = false } = {}) {
      const result = await api("GET", "v1/grants");
      if (!result.ok) {
        if (!quiet) ctx.showProblem(result, {});
        return false;
      }
      const data = result.data || {};
      grants = {
        given: Array.isArray(data.given) ? data.given : [],
        received: Array.isArray(data.received) ? data.received : [],
      };
      ctx.grantsChanged(); // the lookup form's grant choices
      return true;
    }

    /** The grants this account received that are active (as last loaded). */
    function activeReceived() {
      return grants ? grants.received.filter((g) => g.status === "active") : [];
    }

    function receivedLabel(g) {
      return t("decl.grantOption", {
        owner: partyText(g.owner),
        purposes: purposesText(g.purposes),
        until: when(g.valid_until, { dateStyle: "medium" }),
      });
    }

    // --- my vehicles ------------------------------------------------------------------------

    const VEHICLE_CTX = {
      codes: {
        invalid_vin: ["vehicle-vin", "fieldError.vin"],
        vehicle_exists: ["vehicle-vin", "fieldError.vehicleExists"],
      },
      fields: { vin: "vehicle-vin", label: "vehicle-label" },
    };

    function renderVehicles() {
      const list = $("vehicles-list");
      if (vehicles === null) {
        list.replaceChildren();
        $("vehicles-empty").hidden = true;
        return;
      }
      $("vehicles-empty").hidden = vehicles.length > 0;
      list.replaceChildren(
        ...vehicles.map((v) => {
          const nameId = `vehicle-${v.id}-name`;
          const vin = vinOf(v.id);
          const item = el(
            "li",
            { "data-vehicle": v.id },
            el("h3", { id: nameId, tabindex: "-1" }, v.label || t("vehicles.noLabel")),
            factList([
              [
                t("vehicle.vin"),
                vin ? el("span", { class: "mono" }, vin) : t("vehicles.vinElsewhere"),
              ],
              [t("vehicles.declared"), when(v.created_at)],
            ]),
          );
          if (editing === v.id) item.append(renameForm(v, nameId));
          else if (confirming === `vehicle:${v.id}`) item.append(deleteConfirm(v, nameId));
          else {
            const rename = el(
              "button",
              { type: "button", class: "rename", "aria-describedby": nameId },
              t("vehicles.rename"),
            );
            rename.addEventListener("click", () => {
              editing = v.id;
              confirming = null;
              ctx.clearFields();
              renderVehicles();
              $(`rename-${v.id}`).focus();
            });
            const grant = el(
              "button",
              { type: "button", class: "grant", "aria-describedby": nameId },
              t("vehicles.grant"),
            );
            grant.addEventListener("click", () => openGrants({ vehicleId: v.id }));
            const remove = el(
              "button",
              { type: "button", class: "danger remove", "aria-describedby": nameId },
              t("vehicles.delete"),
            );
            remove.addEventListener("click", () => {
              confirming = `vehicle:${v.id}`;
              editing = null;
              renderVehicles();
              $(`vehicle-${v.id}-no`).focus();
            });
            item.append(el("div", { class: "actions" }, rename, grant, remove));
          }
          return item;
        }),
      );
    }

    function renameForm(v, nameId) {
      const inputId = `rename-${v.id}`;
      const input = el("input", {
        id: inputId,
        type: "text",
        maxlength: "64",
        autocomplete: "off",
      });
      input.value = v.label || "";
      const save = el("button", { type: "submit", class: "primary" }, t("vehicles.save"));
      const cancel = el("button", { type: "button" }, t("vehicles.cancel"));
      const form = el(
        "form",
        { class: "inline-form", novalidate: true, "aria-labelledby": nameId },
        el("label", { for: inputId }, t("vehicles.newLabel")),
        input,
        el("p", { id: `${inputId}-error`, class: "field-error", hidden: true }),
        el("div", { class: "actions" }, save, cancel),
      );
      const stop = () => {
        editing = null;
        ctx.clearFields();
        renderVehicles();
        focusIn(v.id, "button.rename");
      };
      cancel.addEventListener("click", stop);
      input.addEventListener("keydown", (event) => {
        if (event.key === "Escape") stop();
      });
      input.addEventListener("input", () => ctx.clearFields());
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        await ctx.withBusy(save, async () => {
          ctx.clearMessages();
          const label = input.value.trim();
          const result = await api("PATCH", `v1/vehicles/${encodeURIComponent(v.id)}`, {
            json: { label: label || null },
          });
          if (!result.ok) {
            ctx.showProblem(result, { fields: { label: inputId } });
            input.focus();
            return;
          }
          editing = null;
          await loadVehicles();
          renderVehicles();
          ctx.say("vehicles.renamed");
          focusIn(v.id, "button.rename");
        });
      });
      return form;
    }

    function deleteConfirm(v, nameId) {
      const yes = el(
        "button",
        { type: "button", class: "danger confirm-yes" },
        t("vehicles.deleteYes"),
      );
      const no = el("button", { type: "button", id: `vehicle-${v.id}-no` }, t("vehicles.cancel"));
      no.addEventListener("click", () => {
        confirming = null;
        renderVehicles();
        focusIn(v.id, "button.remove");
      });
      yes.addEventListener("click", async () => {
        await ctx.withBusy(yes, async () => {
          ctx.clearMessages();
          const index = vehicles.findIndex((x) => x.id === v.id);
          const result = await api("DELETE", `v1/vehicles/${encodeURIComponent(v.id)}`);
          if (!result.ok && result.status !== 404) {
            ctx.showProblem(result, {});
            return;
          }
          confirming = null;
          const map = readVins();
          delete map[v.id];
          writeVins(map);
          await loadVehicles();
          renderVehicles();
          ctx.say("vehicles.deleted");
          const buttons = $("vehicles-list").querySelectorAll("button.rename");
          if (buttons.length) buttons[Math.min(index, buttons.length - 1)].focus();
          else $("vehicle-vin").focus();
        });
      });
      return el(
        "div",
        { class: "confirm", role: "group", "aria-labelledby": nameId },
        el("p", {}, t("vehicles.deleteConfirm")),
        el("div", { class: "actions" }, yes, no),
      );
    }

    function focusIn(vehicleId, selector) {
      const item = $("vehicles-list").querySelector(`li[data-vehicle="${CSS.escape(vehicleId)}"]`);
      const target = item && item.querySelector(selector);
      if (target) target.focus();
    }

    async function declareVehicle(event) {
      event.preventDefault();
      await ctx.withBusy($("vehicle-submit"), async () => {
        ctx.clearMessages();
        ctx.clearFields();
        const vin = ctx.normalizeVin($("vehicle-vin").value);
        if (!vin) {
          ctx.simpleAlert("lookup.enterVinTitle", "lookup.enterVinAction");
          ctx.markFields({ "vehicle-vin": { key: "fieldError.required" } });
          $("vehicle-vin").focus();
          return;
        }
        $("vehicle-vin").value = vin;
        const local = ctx.localVinProblems(vin);
        if (local.length) {
          // never sent, as in the lookup form
          ctx.showProblem(
            { status: 422, problem: { code: "invalid_vin", errors: local } },
            { ...VEHICLE_CTX, vin },
          );
          $("vehicle-vin").focus();
          return;
        }
        const label = $("vehicle-label").value.trim();
        const body = { vin };
        if (label) body.label = label;
        const result = await api("POST", "v1/vehicles", { json: body });
        if (!result.ok) {
          ctx.showProblem(result, { ...VEHICLE_CTX, vin });
          $("vehicle-vin").focus();
          return;
        }
        const map = readVins();
        map[result.data.id] = vin; // on this device only: the gateway has a pseudonym
        writeVins(map);
        $("vehicle-form").reset();
        await loadVehicles();
        renderVehicles();
        ctx.say("vehicles.declaredStatus", { name: vehicleName(result.data) });
        const title = $(`vehicle-${result.data.id}-name`);
        if (title) title.focus();
      });
    }

    async function openVehicles() {
      ctx.clearMessages();
      ctx.clearFields();
      editing = null;
      confirming = null;
      ctx.show("vehicles");
      if (await loadVehicles()) renderVehicles();
    }

    // --- grants given (owner) ---------------------------------------------------------------

    const GRANT_CTX = {
      codes: {
        workshop_unknown: ["grant-workshop", "fieldError.workshopUnknown"],
        grant_to_self: ["grant-workshop", "fieldError.grantToSelf"],
        not_found: ["grant-vehicle", "fieldError.invalid"],
      },
      fields: {
        vehicle_id: "grant-vehicle",
        purposes: "grant-purposes",
        valid_until: "grant-until",
        max_uses: "grant-max-uses",
        workshop_code: "grant-workshop",
      },
    };

    function isoDate(d) {
      const pad = (n) => String(n).padStart(2, "0");
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    }

    function lastDate() {
      const d = new Date();
      d.setDate(d.getDate() + MAX_DAYS);
      return isoDate(d);
    }

    function syncRecipient() {
      const toWorkshop = $("grant-to-workshop").checked;
      $("grant-workshop-box").hidden = !toWorkshop;
      $("grant-workshop").required = toWorkshop;
    }

    function renderGrantForm(selectId) {
      const select = $("grant-vehicle");
      const keep = selectId || select.value;
      const list = vehicles || [];
      select.replaceChildren(
        ...list.map((v) => el("option", { value: v.id }, vehicleName(v))),
      );
      if (list.some((v) => v.id === keep)) select.value = keep;
      const none = vehicles !== null && list.length === 0;
      $("grant-no-vehicle").hidden = !none;
      $("grant-form").hidden = none;
      $("grant-until").min = ctx.todayIso();
      $("grant-until").max = lastDate();
      $("grant-until").setAttribute("lang", I18N.lang);
      $("grant-until-hint").textContent = t("grants.untilHint", {
        date: I18N.dateTime(new Date(`${lastDate()}T12:00:00`), { dateStyle: "long" }),
      });
      syncRecipient();
    }

    function readGrantForm() {
      const marks = {};
      const vehicleId = $("grant-vehicle").value;
      if (!vehicleId) marks["grant-vehicle"] = { key: "fieldError.required" };
      const purposes = PURPOSES.filter((p) => $(`grant-purpose-${p}`).checked);
      if (!purposes.length) marks["grant-purposes"] = { key: "fieldError.grantPurposes" };
      const until = $("grant-until").value;
      let validUntil = null;
      if (!/^\d{4}-\d{2}-\d{2}$/.test(until)) {
        marks["grant-until"] = { key: "fieldError.grantUntil" };
      } else if (until < ctx.todayIso() || until > lastDate()) {
        marks["grant-until"] = {
          key: "fieldError.grantUntilRange",
          params: { max: I18N.dateTime(new Date(`${lastDate()}T12:00:00`), { dateStyle: "long" }) },
        };
      } else {
        const [y, m, d] = until.split("-").map(Number);
        validUntil = new Date(y, m - 1, d, 23, 59, 59).toISOString();
      }
      const rawMax = $("grant-max-uses").value.trim();
      let maxUses = null;
      if (rawMax) {
        maxUses = /^\d+$/.test(rawMax) ? Number(rawMax) : NaN;
        if (!(maxUses >= 1 && maxUses <= MAX_USES))
          marks["grant-max-uses"] = { key: "fieldError.maxUses", params: { max: MAX_USES } };
      }
      let workshopCode = null;
      if ($("grant-to-workshop").checked) {
        const code = normalizeCode($("grant-workshop").value, 8);
        if (code === null) marks["grant-workshop"] = { key: "fieldError.workshopCode" };
        else workshopCode = displayCode(code);
      }
      if (Object.keys(marks).length) {
        const labels = {
          "grant-vehicle": "grants.vehicle",
          "grant-purposes": "grants.scope",
          "grant-until": "grants.until",
          "grant-max-uses": "grants.maxUses",
          "grant-workshop": "grants.workshopCode",
        };
        ctx.alertWith(() => [
          el("strong", {}, t("grants.incompleteTitle")),
          el("p", {}, t("grants.incompleteAction")),
          el(
            "ul",
            { class: "errors" },
            Object.entries(marks).map(([id, mark]) =>
              el(
                "li",
                {},
                t("invalid.field", { field: t(labels[id]), text: t(mark.key, mark.params) }),
              ),
            ),
          ),
        ]);
        ctx.markFields(marks);
        const first = Object.keys(marks)[0];
        (first === "grant-purposes" ? $(`grant-purpose-${PURPOSES[0]}`) : $(first)).focus();
        return null;
      }
      const body = { vehicle_id: vehicleId, purposes, valid_until: validUntil };
      if (maxUses !== null) body.max_uses = maxUses;
      if (workshopCode) body.workshop_code = workshopCode;
      return body;
    }

    async function createGrant(event) {
      event.preventDefault();
      await ctx.withBusy($("grant-submit"), async () => {
        ctx.clearMessages();
        ctx.clearFields();
        const body = readGrantForm();
        if (body === null) return;
        const result = await api("POST", "v1/grants", { json: body });
        if (!result.ok) {
          ctx.showProblem(result, GRANT_CTX);
          const marked = document.querySelector("#grant-form [aria-invalid=true]");
          if (marked) marked.focus();
          return;
        }
        const data = result.data || {};
        $("grant-max-uses").value = "";
        $("grant-workshop").value = "";
        await loadGrants({ quiet: true });
        if (data.code) {
          showCode(data.grant ? data.grant.id : null, data);
          ctx.say("code.created");
        } else {
          hideCode();
          renderGiven();
          ctx.say("grants.createdFor", { workshop: partyText(data.grant && data.grant.grantee) });
          focusGrant(data.grant && data.grant.id);
        }
      });
    }

    function focusGrant(grantId) {
      const title = grantId && $(`grant-${grantId}-title`);
      if (title) title.focus();
      else $("given-title").focus();
    }

    // --- the one-time code -------------------------------------------------------------------

    function showCode(grantId, data) {
      stopCodeTimers();
      const expiresAt = time(data.code_expires_at);
      shownCode = {
        grantId,
        code: displayCode(data.code),
        expiresAt,
        qr: qrImage(data.qr_svg),
      };
      renderCode();
      renderGiven();
      $("code-card").hidden = false;
      $("code-title").focus();
      if (expiresAt !== null) codeTimer = setInterval(tickCode, 1000);
      pollTimer = setInterval(pollRedeemed, POLL_MS);
    }

    function stopCodeTimers() {
      if (codeTimer) clearInterval(codeTimer);
      if (pollTimer) clearInterval(pollTimer);
      codeTimer = null;
      pollTimer = null;
    }

    function hideCode() {
      stopCodeTimers();
      shownCode = null;
      $("code-card").hidden = true;
      $("grant-code").textContent = "";
      $("grant-qr").removeAttribute("src");
      $("grant-qr").hidden = true;
      $("code-expiry").replaceChildren();
    }

    function secondsLeft() {
      if (!shownCode || shownCode.expiresAt === null) return null;
      return Math.max(0, Math.ceil((shownCode.expiresAt - Date.now()) / 1000));
    }

    function renderCode() {
      if (!shownCode) return;
      const left = secondsLeft();
      const expired = left === 0;
      $("code-card").classList.toggle("expired", expired);
      $("grant-code").textContent = shownCode.code;
      const qr = $("grant-qr");
      qr.hidden = expired || !shownCode.qr;
      if (shownCode.qr && !expired) {
        qr.src = shownCode.qr;
        qr.alt = t("code.qrAlt");
      }
      const line = $("code-expiry");
      if (left === null) line.replaceChildren();
      else if (expired) line.replaceChildren(t("code.expired"));
      else {
        const timer = el(
          "span",
          {
            id: "code-countdown",
            class: "countdown",
            role: "timer",
            "aria-live": "off",
            "data-seconds": String(left),
          },
          ctx.formatDuration(left),
        );
        line.replaceChildren(...I18N.nodes("code.expiresIn", { time: timer }));
      }
      $("code-new").hidden = !shownCode.grantId;
    }

    function tickCode() {
      const left = secondsLeft();
      const timer = $("code-countdown");
      if (left === null) return;
      if (left > 0 && timer) {
        timer.dataset.seconds = String(left);
        timer.textContent = ctx.formatDuration(left);
        return;
      }
      stopCodeTimers();
      renderCode(); // expired: the code and its QR code are taken off the screen
    }

    async function pollRedeemed() {
      if (!shownCode || !shownCode.grantId || $("screen-grants").hidden) return;
      if (!(await loadGrants({ quiet: true })) || !shownCode) return;
      const g = grants.given.find((x) => x.id === shownCode.grantId);
      if (g && g.status !== "pending") {
        hideCode();
        renderGiven();
        ctx.say(g.status === "active" ? "code.redeemed" : "code.gone");
        focusGrant(g.id);
      }
    }

    async function newCode(grantId, button) {
      await ctx.withBusy(button, async () => {
        ctx.clearMessages();
        const result = await api("POST", `v1/grants/${encodeURIComponent(grantId)}/code`);
        if (!result.ok) {
          ctx.showProblem(result, {});
          await loadGrants({ quiet: true });
          renderGiven();
          return;
        }
        await loadGrants({ quiet: true });
        showCode(grantId, result.data || {});
        ctx.say("code.renewed");
      });
    }

    // --- the list of grants given, their uses ------------------------------------------------

    function renderGiven() {
      const list = $("given-list");
      if (grants === null) {
        list.replaceChildren();
        $("given-empty").hidden = true;
        return;
      }
      $("given-empty").hidden = grants.given.length > 0;
      list.replaceChildren(...grants.given.map(givenItem));
    }

    function givenItem(g) {
      const titleId = `grant-${g.id}-title`;
      const vehicle = g.vehicle ? vehicleName(g.vehicle) : t("vehicles.unknown");
      const item = el(
        "li",
        { "data-grant": g.id, "data-status": g.status },
        el("h3", { id: titleId, tabindex: "-1" }, vehicle, " ", statusTag(g.status)),
        factList([
          [t("grants.workshop"), partyText(g.grantee)],
          [t("grants.purposes"), purposesText(g.purposes)],
          [t("grants.until"), when(g.valid_until)],
          [t("grants.uses"), usesText(g)],
          [t("grants.created"), when(g.created_at)],
          [t("grants.redeemed"), g.redeemed_at ? when(g.redeemed_at) : null],
          [t("grants.revoked"), g.revoked_at ? when(g.revoked_at) : null],
        ]),
      );
      const usesId = `grant-${g.id}-uses`;
      const open = openUses.has(g.id);
      const toggle = el(
        "button",
        {
          type: "button",
          class: "show-uses",
          "aria-expanded": open ? "true" : "false",
          "aria-controls": usesId,
          "aria-describedby": titleId,
        },
        t(open ? "uses.hide" : "uses.show"),
      );
      toggle.addEventListener("click", () => toggleUses(g.id, toggle));
      const buttons = [toggle];
      if (g.status === "pending") {
        const again = el(
          "button",
          { type: "button", class: "new-code", "aria-describedby": titleId },
          t("code.new"),
        );
        again.addEventListener("click", () => newCode(g.id, again));
        buttons.push(again);
      }
      const revocable = g.status === "pending" || g.status === "active" || g.status === "exhausted";
      if (revocable && confirming !== `grant:${g.id}`) {
        const revoke = el(
          "button",
          { type: "button", class: "danger revoke", "aria-describedby": titleId },
          t("grants.revoke"),
        );
        revoke.addEventListener("click", () => {
          confirming = `grant:${g.id}`;
          renderGiven();
          $(`grant-${g.id}-no`).focus();
        });
        buttons.push(revoke);
      }
      item.append(el("div", { class: "actions" }, buttons));
      if (confirming === `grant:${g.id}`) item.append(revokeConfirm(g, titleId));
      const region = el("div", { id: usesId, class: "uses", hidden: !open });
      if (open) region.append(...usesNodes(g.id));
      item.append(region);
      return item;
    }

    function revokeConfirm(g, titleId) {
      const yes = el(
        "button",
        { type: "button", class: "danger confirm-yes" },
        t("grants.revokeYes"),
      );
      const no = el("button", { type: "button", id: `grant-${g.id}-no` }, t("vehicles.cancel"));
      no.addEventListener("click", () => {
        confirming = null;
        renderGiven();
        focusButton(g.id, ".revoke");
      });
      yes.addEventListener("click", async () => {
        await ctx.withBusy(yes, async () => {
          ctx.clearMessages();
          const result = await api("POST", `v1/grants/${encodeURIComponent(g.id)}/revoke`);
          confirming = null;
          if (!result.ok) {
            ctx.showProblem(result, {});
            renderGiven();
            return;
          }
          if (shownCode && shownCode.grantId === g.id) hideCode();
          await loadGrants({ quiet: true });
          if (openUses.has(g.id)) await loadUses(g.id);
          renderGiven();
          ctx.say("grants.revokedStatus");
          focusGrant(g.id);
        });
      });
      return el(
        "div",
        { class: "confirm", role: "group", "aria-labelledby": titleId },
        el("p", {}, t("grants.revokeConfirm")),
        el("div", { class: "actions" }, yes, no),
      );
    }

    async function loadUses(grantId) {
      const result = await api("GET", `v1/grants/${encodeURIComponent(grantId)}/uses`);
      if (!result.ok) {
        ctx.showProblem(result, {});
        return false;
      }
      const data = result.data || {};
      openUses.set(grantId, Array.isArray(data.uses) ? data.uses : []);
      if (data.grant && grants) {
        grants.given = grants.given.map((g) => (g.id === grantId ? data.grant : g));
      }
      return true;
    }

    async function toggleUses(grantId, button) {
      if (openUses.has(grantId)) {
        openUses.delete(grantId);
        renderGiven();
        focusButton(grantId, ".show-uses");
        return;
      }
      await ctx.withBusy(button, async () => {
        ctx.clearMessages();
        if (!(await loadUses(grantId))) return;
        renderGiven();
        focusButton(grantId, ".show-uses");
      });
    }

    function focusButton(grantId, selector) {
      const item = $("given-list").querySelector(`li[data-grant="${CSS.escape(grantId)}"]`);
      const target = item && item.querySelector(selector);
      if (target) target.focus();
    }

    function usesNodes(grantId) {
      const uses = openUses.get(grantId) || [];
      const captionId = `grant-${grantId}-uses-caption`;
      if (!uses.length) return [el("p", { class: "hint" }, t("uses.none"))];
      const head = ["uses.at", "uses.endpoint", "uses.purpose", "uses.outcome", "uses.code"];
      return [
        el(
          "div",
          { class: "table-wrap", tabindex: "0", role: "region", "aria-labelledby": captionId },
          el(
            "table",
            { class: "uses-table" },
            el("caption", { id: captionId }, t("uses.caption", { n: uses.length })),
            el("thead", {}, el("tr", {}, head.map((k) => el("th", { scope: "col" }, t(k))))),
            el(
              "tbody",
              {},
              uses.map((u) =>
                el(
                  "tr",
                  { "data-outcome": u.outcome || "", "data-code": u.code || "" },
                  el("td", {}, when(u.at)),
                  el(
                    "td",
                    {},
                    I18N.has(`endpoint.${u.endpoint}`) ? t(`endpoint.${u.endpoint}`) : u.endpoint,
                  ),
                  el("td", {}, u.purpose ? purposesText([u.purpose]) : "–"),
                  el(
                    "td",
                    {},
                    I18N.has(`outcome.${u.outcome}`) ? t(`outcome.${u.outcome}`) : u.outcome,
                  ),
                  el(
                    "td",
                    {},
                    u.code
                      ? I18N.has(`problem.${u.code}.title`)
                        ? t(`problem.${u.code}.title`)
                        : u.code
                      : "–",
                  ),
                ),
              ),
            ),
          ),
        ),
      ];
    }

    async function refreshGiven(event) {
      await ctx.withBusy(event.currentTarget, async () => {
        ctx.clearMessages();
        if (!(await loadGrants())) return;
        for (const id of [...openUses.keys()]) {
          if (!grants.given.some((g) => g.id === id)) openUses.delete(id);
          else await loadUses(id);
        }
        renderGiven();
        ctx.say("console.refreshed");
      });
    }

    async function openGrants({ vehicleId } = {}) {
      ctx.clearMessages();
      ctx.clearFields();
      confirming = null;
      ctx.show("grants");
      const [okV, okG] = [await loadVehicles(), await loadGrants()];
      if (okV) renderGrantForm(vehicleId);
      if (okG) renderGiven();
      if (vehicleId && okV) $("grant-vehicle").focus();
    }

    // --- workshop: own code, redeem, received ------------------------------------------------

    const REDEEM_CTX = {
      codes: {
        grant_code_invalid: ["redeem-code", "fieldError.grantCodeInvalid"],
        grant_to_self: ["redeem-code", "fieldError.grantToSelf"],
      },
      fields: { code: "redeem-code" },
    };

    function renderOwnCode() {
      const a = ctx.account();
      const code = a && a.workshop_code ? displayCode(a.workshop_code) : null;
      $("own-code").textContent = code || t("workshop.noCode");
      $("own-code").classList.toggle("workshop-code", Boolean(code));
    }

    function renderReceived() {
      const list = $("received-list");
      if (grants === null) {
        list.replaceChildren();
        $("received-empty").hidden = true;
        return;
      }
      $("received-empty").hidden = grants.received.length > 0;
      list.replaceChildren(
        ...grants.received.map((g) => {
          const titleId = `received-${g.id}-title`;
          const item = el(
            "li",
            { "data-grant": g.id, "data-status": g.status },
            el(
              "h3",
              { id: titleId, tabindex: "-1" },
              t("workshop.from", { owner: partyText(g.owner) }),
              " ",
              statusTag(g.status),
            ),
            factList([
              [t("grants.purposes"), purposesText(g.purposes)],
              [t("grants.until"), when(g.valid_until)],
              [t("grants.uses"), usesText(g)],
              [t("grants.redeemed"), g.redeemed_at ? when(g.redeemed_at) : null],
            ]),
          );
          if (g.status === "active") {
            const use = el(
              "button",
              { type: "button", class: "use-grant", "aria-describedby": titleId },
              t("workshop.useGrant"),
            );
            use.addEventListener("click", () => ctx.useGrant(g.id));
            item.append(el("div", { class: "actions" }, use));
          }
          return item;
        }),
      );
    }

    async function redeem(event) {
      event.preventDefault();
      await ctx.withBusy($("redeem-submit"), async () => {
        ctx.clearMessages();
        ctx.clearFields();
        const raw = $("redeem-code").value;
        const code = normalizeCode(raw, 10);
        if (code === null) {
          ctx.simpleAlert("workshop.codeFormatTitle", "workshop.codeFormatAction");
          ctx.markFields({
            "redeem-code": { key: raw.trim() ? "fieldError.grantCode" : "fieldError.required" },
          });
          $("redeem-code").focus();
          return; // nothing sent: a code that cannot exist does not count as a failed try
        }
        const result = await api("POST", "v1/grant-codes/redeem", {
          json: { code: displayCode(code) },
        });
        if (!result.ok) {
          ctx.showProblem(result, REDEEM_CTX);
          $("redeem-code").focus();
          return;
        }
        $("redeem-code").value = "";
        await loadGrants({ quiet: true });
        renderReceived();
        const g = result.data || {};
        ctx.say("workshop.redeemed", { owner: partyText(g.owner) });
        const title = g.id && $(`received-${g.id}-title`);
        if (title) title.focus();
      });
    }

    async function refreshReceived(event) {
      await ctx.withBusy(event.currentTarget, async () => {
        ctx.clearMessages();
        if (!(await loadGrants())) return;
        renderReceived();
        ctx.say("console.refreshed");
      });
    }

    async function openWorkshop() {
      ctx.clearMessages();
      ctx.clearFields();
      ctx.show("workshop");
      const me = await api("GET", "v1/me");
      if (me.ok) ctx.setAccount(me.data);
      renderOwnCode();
      if (await loadGrants()) renderReceived();
    }

    // --- wiring, language, log out -----------------------------------------------------------

    function wire() {
      if (wired) return;
      wired = true;
      $("vehicle-form").addEventListener("submit", declareVehicle);
      $("grant-form").addEventListener("submit", createGrant);
      $("redeem-form").addEventListener("submit", redeem);
      for (const radio of document.querySelectorAll("input[name=grant-recipient]")) {
        radio.addEventListener("change", syncRecipient);
      }
      $("grant-to-vehicles").addEventListener("click", openVehicles);
      $("code-new").addEventListener("click", (event) => {
        if (shownCode && shownCode.grantId) newCode(shownCode.grantId, event.currentTarget);
      });
      $("code-done").addEventListener("click", () => {
        const id = shownCode && shownCode.grantId;
        hideCode();
        renderGiven();
        focusGrant(id);
      });
      $("grants-refresh").addEventListener("click", refreshGiven);
      $("received-refresh").addEventListener("click", refreshReceived);
    }

    function rerender() {
      renderVehicles();
      if (vehicles !== null) renderGrantForm();
      renderGiven();
      renderReceived();
      renderOwnCode();
      renderCode();
    }

    function reset() {
      hideCode();
      vehicles = null;
      grants = null;
      openUses = new Map();
      editing = null;
      confirming = null;
      for (const id of ["vehicle-form", "grant-form", "redeem-form"]) $(id).reset();
      $("grant-vehicle").replaceChildren();
      $("own-code").textContent = "";
      rerender();
    }

    /** The account is erased: the VINs of its vehicles on this device go too. */
    function forgetDevice() {
      const key = vinKey();
      if (key) window.localStorage.removeItem(key);
    }

    wire();
    return {
      activeReceived,
      forgetDevice,
      loadGrants,
      openGrants,
      openVehicles,
      openWorkshop,
      receivedLabel,
      rerender,
      reset,
    };
  }

  return { create, qrImage };
})();
