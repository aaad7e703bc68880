// @generated automatically by Diesel CLI.

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
    }
}

diesel::allow_tables_to_appear_in_same_query!(models, plans, users,);
