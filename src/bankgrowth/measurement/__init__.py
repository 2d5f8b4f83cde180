"""Measurement: KPIs, funnels and (later) campaign lift."""
