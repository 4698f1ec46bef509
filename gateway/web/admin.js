/* The operators' console (admin role): open flags with their evidence, unblock, suspend and
 * unsuspend with the audited reason, the disclosure export (6.4), and search statistics as
 * plain-SVG charts (charts.js). Shown only to admins; the API refuses everyone else
 * (403 admin_required). Flags and statistics never contain a VIN.
 */
"use strict";

window.VinGwAdmin = (() => {
  function create(ctx) {
    const { $, api, el, t, I18N } = ctx;
    const Charts = window.VinGwCharts;
    let flags = null; // GET /v1/admin/flags as shown in the table
    let stats = null; // {days, since, counts, flags (resolved included)}
    let wired = false;

    const ACTION_CTX = {
      codes: { not_found: ["admin-account", "fieldError.account"] },
      fields: { reason: "admin-reason" },
    };

    function policyName(p) {
      return I18N.has(`policy.${p}.name`) ? t(`policy.${p}.name`) : p;
    }

    function evidenceText(evidence) {
      const e = evidence || {};
      return t("console.evidenceText", {
        score: e.score ?? "-",
        distinct: e.distinct_vins ?? "-",
        run: e.sequential_run ?? "-",
      });
    }

    function renderFlags() {
      const box = $("flags");
      if (flags === null) {
        box.replaceChildren();
        return;
      }
      if (!flags.length) {
        box.replaceChildren(el("p", { class: "hint", id: "flags-empty" }, t("console.noFlags")));
        return;
      }
      const head = [
        "console.col.created",
        "console.col.account",
        "console.col.policy",
        "console.col.evidence",
        "console.col.block",
        "console.col.status",
        "console.col.action",
      ];
      const rows = flags.map((f) => {
        const accountId = `flag-${f.id}-account`;
        const select = el(
          "button",
          { type: "button", class: "select-account", "aria-describedby": accountId },
          t("console.select"),
        );
        select.addEventListener("click", () => {
          $("admin-account").value = f.account_id;
          ctx.clearFields();
          ctx.say("console.selected");
          $("admin-reason").focus();
        });
        return el(
          "tr",
          { "data-flag": String(f.id), "data-policy": f.policy },
          el("td", {}, I18N.dateTime(f.created_at)),
          el("td", { class: "mono", id: accountId }, f.account_id),
          el(
            "td",
            {},
            el("strong", {}, policyName(f.policy)),
            f.shadow ? el("span", { class: "tag" }, t("console.shadow")) : null,
            el("br"),
            el(
              "span",
              { class: "hint" },
              I18N.has(`policy.${f.policy}.reason`) ? t(`policy.${f.policy}.reason`) : f.reason,
            ),
          ),
          el("td", {}, evidenceText(f.evidence)),
          el(
            "td",
            {},
            f.block_s ? t("console.blockFor", { minutes: Math.round(f.block_s / 60) }) : "-",
          ),
          el(
            "td",
            {},
            f.resolved_at
              ? t("console.resolved", { at: I18N.dateTime(f.resolved_at) })
              : el("span", { class: "tag open" }, t("console.open")),
          ),
          el("td", {}, select),
        );
      });
      box.replaceChildren(
        el(
          "table",
          { id: "flags-table" },
          el("caption", { class: "sr-only" }, t("console.flags")),
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              head.map((k) => el("th", { scope: "col" }, t(k))),
            ),
          ),
          el("tbody", {}, rows),
        ),
      );
    }

    async function loadFlags() {
      const resolved = $("flags-resolved").checked;
      const result = await api("GET", `v1/admin/flags?include_resolved=${resolved}&limit=200`);
      if (!result.ok) {
        ctx.showProblem(result, {});
        return false;
      }
      flags = result.data;
      renderFlags();
      return true;
    }

    const DAY = 86400;

    function renderStats() {
      if (stats === null) {
        for (const id of ["chart-queries", "chart-refusals", "chart-blocks"])
          $(id).replaceChildren();
        return;
      }
      const firstDay = Math.floor(stats.since / DAY) * DAY;
      const lastDay = Math.floor(Date.now() / 1000 / DAY) * DAY;
      const days = [];
      for (let d = firstDay; d <= lastDay; d += DAY) days.push(d);
      const dayLabel = (d) =>
        I18N.dateTime(d * 1000, { month: "2-digit", day: "2-digit", timeZone: "UTC" });
      const common = {
        empty: t("chart.empty"),
        table: t("chart.table"),
        total: t("chart.total"),
        label: t("chart.day"),
        value: t("chart.count"),
      };

      // queries per day, stacked by outcome
      const outcomes = ["ok", "miss", "refused"];
      const perDay = Object.fromEntries(outcomes.map((o) => [o, days.map(() => 0)]));
      for (const c of stats.counts) {
        if (c.dimension !== "outcome" || !outcomes.includes(c.value)) continue;
        const i = days.indexOf(Math.floor(c.day / DAY) * DAY);
        if (i >= 0) perDay[c.value][i] += c.count;
      }
      const totalQueries = outcomes.reduce((s, o) => s + perDay[o].reduce((a, b) => a + b, 0), 0);
      Charts.columns($("chart-queries"), {
        labels: days.map(dayLabel),
        series: outcomes.map((o) => ({
          label: t(`outcome.${o}`),
          cls: `series-${o}`,
          values: perDay[o],
        })),
        text: {
          ...common,
          title: t("chart.queries"),
          desc: t("chart.queriesDesc", { n: totalQueries, days: days.length }),
        },
        format: (n) => I18N.number(n),
      });

      // refusals by problem code (needs the "code" dimension of the statistics)
      const byCode = new Map();
      let hasCodes = false;
      for (const c of stats.counts) {
        if (c.dimension !== "code") continue;
        hasCodes = true;
        if (c.value) byCode.set(c.value, (byCode.get(c.value) || 0) + c.count);
      }
      if (hasCodes || totalQueries === 0) {
        const rows = [...byCode].map(([code, n]) => ({
          label: I18N.has(`problem.${code}.title`) ? t(`problem.${code}.title`) : code,
          value: n,
          cls: "series-refused",
        }));
        Charts.bars($("chart-refusals"), {
          rows,
          text: {
            ...common,
            label: t("chart.code"),
            title: t("chart.refusals"),
            desc: t("chart.refusalsDesc", { n: rows.reduce((s, r) => s + r.value, 0) }),
          },
          format: (n) => I18N.number(n),
        });
      } else {
        $("chart-refusals").replaceChildren(
          el("figcaption", {}, t("chart.refusals")),
          el("p", { class: "hint chart-empty", id: "refusals-unavailable" }, t("chart.noCodes")),
        );
      }

      // blocks by policy, from the flags (enforced blocks only; shadow findings are not blocks)
      const byPolicy = new Map();
      for (const f of stats.flags) {
        if (f.shadow || Date.parse(f.created_at) / 1000 < stats.since) continue;
        byPolicy.set(f.policy, (byPolicy.get(f.policy) || 0) + 1);
      }
      const blockRows = [...byPolicy].map(([p, n]) => ({
        label: policyName(p),
        value: n,
        cls: "series-block",
      }));
      Charts.bars($("chart-blocks"), {
        rows: blockRows,
        text: {
          ...common,
          label: t("chart.policy"),
          title: t("chart.blocks"),
          desc: t("chart.blocksDesc", { n: blockRows.reduce((s, r) => s + r.value, 0) }),
        },
        format: (n) => I18N.number(n),
      });
    }

    async function loadStats() {
      const days = Number($("stats-days").value) || 30;
      const result = await api("GET", `v1/admin/search-stats?days=${days}`);
      if (!result.ok) {
        ctx.showProblem(result, {});
        return false;
      }
      const all = await api("GET", "v1/admin/flags?include_resolved=true&limit=1000");
      if (!all.ok) {
        ctx.showProblem(all, {});
        return false;
      }
      stats = { days, since: result.data.since, counts: result.data.counts, flags: all.data };
      renderStats();
      return true;
    }

    /** The account id and reason of the form, or null with the fields marked. */
    function readAction() {
      ctx.clearMessages();
      const accountId = $("admin-account").value.trim();
      const reason = $("admin-reason").value.trim();
      const marks = {};
      if (!accountId) marks["admin-account"] = { key: "fieldError.required" };
      if (reason.length < 3 || reason.length > 500)
        marks["admin-reason"] = { key: "fieldError.reason" };
      ctx.markFields(marks);
      if (Object.keys(marks).length) {
        ctx.simpleAlert("console.incompleteTitle", "console.incompleteAction");
        $(Object.keys(marks)[0]).focus();
        return null;
      }
      return { accountId, reason };
    }

    function action(name, done) {
      return async (event) => {
        await ctx.withBusy(event.currentTarget, async () => {
          const input = readAction();
          if (input === null) return;
          const path = `v1/admin/accounts/${encodeURIComponent(input.accountId)}/${name}`;
          const result = await api("POST", path, { json: { reason: input.reason } });
          if (!result.ok) {
            ctx.showProblem(result, ACTION_CTX);
            return;
          }
          $("admin-reason").value = "";
          done(result.data, input);
          await loadFlags();
        });
      };
    }

    function wire() {
      if (wired) return;
      wired = true;
      let resized = null;
      window.addEventListener("resize", () => {
        clearTimeout(resized); // draw the charts again at their new width
        resized = setTimeout(() => {
          if (!$("screen-console").hidden) renderStats();
        }, 150);
      });
      $("flags-resolved").addEventListener("change", () => loadFlags());
      $("flags-refresh").addEventListener("click", (event) =>
        ctx.withBusy(event.currentTarget, async () => {
          ctx.clearMessages();
          if (await loadFlags()) ctx.say("console.refreshed");
        }),
      );
      $("stats-refresh").addEventListener("click", (event) =>
        ctx.withBusy(event.currentTarget, async () => {
          ctx.clearMessages();
          if (await loadStats()) ctx.say("console.refreshed");
        }),
      );
      $("stats-days").addEventListener("change", () => loadStats());
      $("admin-unblock").addEventListener(
        "click",
        action("unblock", (d) =>
          ctx.say(d.was_blocked ? "console.unblocked" : "console.notBlocked", {
            n: d.flags_resolved,
          }),
        ),
      );
      $("admin-suspend").addEventListener(
        "click",
        action("suspend", () => ctx.say("console.suspended")),
      );
      $("admin-unsuspend").addEventListener(
        "click",
        action("unsuspend", () => ctx.say("console.unsuspended")),
      );
      $("admin-disclosure").addEventListener(
        "click",
        action("disclosure", (d, input) => {
          ctx.download(`vin-gateway-disclosure-${input.accountId}-${ctx.todayIso()}.json`, d);
          ctx.say("console.disclosed", { n: d.rows.length });
        }),
      );
    }

    async function open() {
      wire();
      if (await loadFlags()) await loadStats();
    }

    function rerender() {
      renderFlags();
      renderStats();
    }

    function reset() {
      flags = null;
      stats = null;
      $("admin-account").value = "";
      $("admin-reason").value = "";
      $("flags-resolved").checked = false;
      rerender();
    }

    return { open, rerender, reset };
  }

  return { create };
})();
