// @generated automatically by Diesel CLI.

diesel::table! {
    announcements (id) {
        id -> Int8,
        topic -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        organization_id -> Uuid,
        created_by -> Uuid,
        name -> Text,
        prefix -> Text,
        secret_hash -> Bytea,
        scopes -> Array<Nullable<Text>>,
        allowed_models -> Nullable<Array<Nullable<Text>>>,
        allowed_ips -> Nullable<Array<Nullable<Text>>>,
        token_limit -> Nullable<Int8>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Uuid,
        organization_id -> Nullable<Uuid>,
        actor_id -> Nullable<Uuid>,
        action -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        metadata -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    avatars (id) {
        id -> Uuid,
        user_id -> Uuid,
        content_type -> Text,
        bytes -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    device_logins (id) {
        id -> Uuid,
        device_code_hash -> Bytea,
        user_code -> Text,
        client_name -> Nullable<Text>,
        client_ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        status -> Text,
        user_id -> Nullable<Uuid>,
        interval_secs -> Int4,
        last_polled_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        decided_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    email_outbox (id) {
        id -> Uuid,
        to_address -> Text,
        subject -> Text,
        text_body -> Text,
        html_body -> Text,
        kind -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    email_tokens (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        purpose -> Text,
        email -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    identities (id) {
        id -> Uuid,
        user_id -> Uuid,
        provider -> Text,
        subject -> Text,
        email -> Nullable<Text>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    invitations (id) {
        id -> Uuid,
        organization_id -> Uuid,
        email -> Text,
        role -> Text,
        token_hash -> Bytea,
        invited_by -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    login_attempts (email) {
        email -> Text,
        attempts -> Int4,
        window_started_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    memberships (organization_id, user_id) {
        organization_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        token_limit -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    mfa_challenges (id) {
        id -> Uuid,
        token_hash -> Bytea,
        user_id -> Uuid,
        method -> Text,
        provider -> Nullable<Text>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    models (id) {
        id -> Text,
        aliases -> Array<Nullable<Text>>,
        provider -> Text,
        display_name -> Text,
        context_window -> Nullable<Int4>,
        input_micro_usd_per_mtok -> Int8,
        cached_input_micro_usd_per_mtok -> Nullable<Int8>,
        output_micro_usd_per_mtok -> Int8,
        enabled -> Bool,
        sort_order -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        max_output_tokens -> Nullable<Int4>,
    }
}

diesel::table! {
    model_routes (model_id, position) {
        model_id -> Text,
        position -> Int4,
        provider_key -> Text,
        upstream_model -> Text,
    }
}

diesel::table! {
    oauth_flows (id) {
        id -> Uuid,
        state_hash -> Bytea,
        provider -> Text,
        redirect_uri -> Text,
        nonce -> Text,
        pkce_verifier -> Bytea,
        link_user_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    oauth_login_codes (code_hash) {
        code_hash -> Bytea,
        user_id -> Uuid,
        provider -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    organizations (id) {
        id -> Uuid,
        name -> Text,
        slug -> Text,
        personal_user_id -> Nullable<Uuid>,
        settings -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        usage_reset_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    plans (id) {
        id -> Uuid,
        key -> Text,
        name -> Text,
        description -> Nullable<Text>,
        price_cents -> Int4,
        currency -> Text,
        billing_interval -> Text,
        monthly_token_limit -> Nullable<Int8>,
        daily_request_limit -> Nullable<Int4>,
        requests_per_minute -> Nullable<Int4>,
        max_members -> Nullable<Int4>,
        max_api_keys -> Nullable<Int4>,
        features -> Array<Nullable<Text>>,
        public -> Bool,
        stripe_price_id -> Nullable<Text>,
        sort_order -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    providers (key) {
        key -> Text,
        name -> Text,
        kind -> Text,
        base_url -> Text,
        api_key_ciphertext -> Nullable<Bytea>,
        api_key_hint -> Nullable<Text>,
        enabled -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Uuid,
        code_hash -> Bytea,
        created_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        generation -> Int8,
        rotated_at -> Nullable<Timestamptz>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        client_name -> Nullable<Text>,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    stripe_events (id) {
        id -> Text,
        event_type -> Text,
        organization_id -> Nullable<Uuid>,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    subscriptions (organization_id) {
        organization_id -> Uuid,
        plan_id -> Uuid,
        status -> Text,
        current_period_start -> Nullable<Timestamptz>,
        current_period_end -> Nullable<Timestamptz>,
        cancel_at_period_end -> Bool,
        stripe_customer_id -> Nullable<Text>,
        stripe_subscription_id -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        delinquent_since -> Nullable<Timestamptz>,
        grace_ends_at -> Nullable<Timestamptz>,
        lapse_noticed_for -> Nullable<Timestamptz>,
        lapses_at -> Nullable<Timestamptz>,
        usage_segment_floor -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    usage_counters (organization_id, subject_kind, subject_id, window_start) {
        organization_id -> Uuid,
        subject_kind -> Text,
        subject_id -> Uuid,
        window_start -> Timestamptz,
        tokens -> Int8,
        requests -> Int8,
    }
}

diesel::table! {
    usage_daily (organization_id, day, model, api_key_id, user_id) {
        organization_id -> Uuid,
        day -> Date,
        model -> Text,
        api_key_id -> Uuid,
        user_id -> Uuid,
        prompt_tokens -> Int8,
        cached_tokens -> Int8,
        completion_tokens -> Int8,
        total_tokens -> Int8,
        requests -> Int8,
        cost_micro_usd -> Int8,
    }
}

diesel::table! {
    usage_events (id) {
        id -> Uuid,
        organization_id -> Uuid,
        api_key_id -> Nullable<Uuid>,
        user_id -> Nullable<Uuid>,
        model -> Text,
        model_id -> Nullable<Text>,
        prompt_tokens -> Int4,
        cached_tokens -> Int4,
        completion_tokens -> Int4,
        total_tokens -> Int4,
        cost_micro_usd -> Int8,
        priced -> Bool,
        request_id -> Nullable<Text>,
        metadata -> Nullable<Jsonb>,
        occurred_at -> Timestamptz,
        created_at -> Timestamptz,
        source -> Text,
        estimated -> Bool,
        provider -> Nullable<Text>,
    }
}

diesel::table! {
    usage_reservations (id) {
        id -> Uuid,
        organization_id -> Uuid,
        user_id -> Uuid,
        api_key_id -> Nullable<Uuid>,
        model -> Text,
        provider -> Nullable<Text>,
        request_id -> Text,
        prompt_tokens -> Int4,
        tokens -> Int8,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    usage_thresholds (organization_id, window_start, threshold) {
        organization_id -> Uuid,
        window_start -> Timestamptz,
        threshold -> Int2,
        crossed_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        password_hash -> Nullable<Text>,
        avatar_url -> Nullable<Text>,
        role -> Text,
        email_verified_at -> Nullable<Timestamptz>,
        suspended_at -> Nullable<Timestamptz>,
        suspension_reason -> Nullable<Text>,
        preferences -> Jsonb,
        last_login_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        mfa_enabled_at -> Nullable<Timestamptz>,
        totp_secret -> Nullable<Bytea>,
        totp_last_step -> Nullable<Int8>,
        totp_pending_secret -> Nullable<Bytea>,
        totp_pending_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(api_keys -> organizations (organization_id));
diesel::joinable!(api_keys -> users (created_by));
diesel::joinable!(audit_log -> users (actor_id));
diesel::joinable!(avatars -> users (user_id));
diesel::joinable!(device_logins -> users (user_id));
diesel::joinable!(email_tokens -> users (user_id));
diesel::joinable!(identities -> users (user_id));
diesel::joinable!(invitations -> organizations (organization_id));
diesel::joinable!(invitations -> users (invited_by));
diesel::joinable!(memberships -> organizations (organization_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(mfa_challenges -> users (user_id));
diesel::joinable!(model_routes -> models (model_id));
diesel::joinable!(model_routes -> providers (provider_key));
diesel::joinable!(usage_reservations -> organizations (organization_id));
diesel::joinable!(oauth_flows -> users (link_user_id));
diesel::joinable!(oauth_login_codes -> users (user_id));
diesel::joinable!(organizations -> users (personal_user_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(stripe_events -> organizations (organization_id));
diesel::joinable!(subscriptions -> organizations (organization_id));
diesel::joinable!(subscriptions -> plans (plan_id));
diesel::joinable!(usage_counters -> organizations (organization_id));
diesel::joinable!(usage_daily -> organizations (organization_id));
diesel::joinable!(usage_thresholds -> organizations (organization_id));

diesel::allow_tables_to_appear_in_same_query!(
    announcements,
    api_keys,
    audit_log,
    avatars,
    device_logins,
    email_outbox,
    email_tokens,
    identities,
    invitations,
    login_attempts,
    memberships,
    mfa_challenges,
    model_routes,
    models,
    oauth_flows,
    oauth_login_codes,
    organizations,
    plans,
    providers,
    recovery_codes,
    sessions,
    stripe_events,
    subscriptions,
    usage_counters,
    usage_daily,
    usage_events,
    usage_reservations,
    usage_thresholds,
    users,
);
